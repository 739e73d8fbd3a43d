"""Provisioning with and without the per-batch os.sync() durability barrier, 1 and 2 workers.

    .venv/bin/python scripts/bench_provision_sync.py sync|nosync

20,000 devices in process; "nosync" stubs os.sync() out to show what the barrier costs.
"""
import sys, tempfile, time
sys.path.insert(0,"/work/main")
from pathlib import Path
from pki.config import Settings
from pki.services import managed, provision as pv
from pki.services.context import open_context
from pki.services.setup import initialise
mode = sys.argv[1]
if mode == "nosync":
    pv.os.sync = lambda: None
home=Path(tempfile.mkdtemp()); s=Settings.load(home=home, environ={}); initialise(s); ctx=open_context(s)
ca=managed.create_ca(ctx, name="X")
for w in (1, 2):
    m=home/f"m{w}.csv"; m.write_text("client_id\n"+"".join(f"w{w}-{i}\n" for i in range(20000)))
    t=time.perf_counter(); pv.provision(ctx, ca=ca.sn, manifest=m, out=home/f"o{w}", workers=w); el=time.perf_counter()-t
    print(mode, w, f"{20000/el:.0f}/s")
