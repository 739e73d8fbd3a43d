"""Provisioning with and without the per-batch durability barrier, 1 and 2 workers.

    .venv/bin/python scripts/bench_provision_sync.py sync|nosync|machine

20,000 devices in process.  "sync": the barrier as shipped (syncfs(2) of the
output's filesystem on Linux); "nosync" stubs it out to show what it costs;
"machine": sync(2) of every filesystem, as before syncfs.
"""
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import os
from pki import durable
from pki.config import Settings
from pki.services import managed, provision as pv
from pki.services.context import open_context
from pki.services.setup import initialise
mode = sys.argv[1]
if mode == "nosync":
    durable.sync_filesystem = lambda path: None
elif mode == "machine":
    durable.sync_filesystem = lambda path: os.sync()
home=Path(tempfile.mkdtemp()); s=Settings.load(home=home, environ={}); initialise(s); ctx=open_context(s)
ca=managed.create_ca(ctx, name="X")
for w in (1, 2):
    m=home/f"m{w}.csv"; m.write_text("client_id\n"+"".join(f"w{w}-{i}\n" for i in range(20000)))
    t=time.perf_counter(); pv.provision(ctx, ca=ca.sn, manifest=m, out=home/f"o{w}", workers=w); el=time.perf_counter()-t
    print(mode, w, f"{20000/el:.0f}/s")
