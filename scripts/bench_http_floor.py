"""Latency floor of pki serve: unauthenticated, constant, and signed requests from one client.

    .venv/bin/python scripts/bench_http_floor.py
"""
import os, socket, subprocess, sys, tempfile, time
sys.path.insert(0,"/work/main")
from pathlib import Path
import httpx
from pki.config import Settings
from pki.services import devices, managed, access
from pki.services.context import open_context
from pki.services.setup import initialise
from pki.client import Client
home=Path(tempfile.mkdtemp()); s=Settings.load(home=home, environ={}); initialise(s); ctx=open_context(s)
ca=managed.create_ca(ctx, name="X"); d=devices.issue_device(ctx, ca=ca.sn, generate=True, client_id="d").device
user=access.create_user(ctx,"admin"); access.attach_policy(ctx,"PkiAdministratorAccess",user="admin")
sock=socket.socket(); sock.bind(("127.0.0.1",0)); port=sock.getsockname()[1]; sock.close()
srv=subprocess.Popen([sys.executable,"-m","pki.cli.main","serve","--port",str(port),"--no-access-log"],env={**os.environ,"PKI_HOME":str(home)},stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
url=f"http://127.0.0.1:{port}"
for _ in range(100):
    try:
        if httpx.get(url+"/openapi.json").status_code==200: break
    except httpx.HTTPError: time.sleep(0.1)
h=httpx.Client()
def rate(f,n=300):
    for _ in range(20): f()
    t=time.perf_counter()
    for _ in range(n): f()
    return n/(time.perf_counter()-t)
print("GET /ca-bundle.pem plain httpx", f"{rate(lambda: h.get(url+'/ca-bundle.pem')):.0f}/s")
print("GET /openapi.json", f"{rate(lambda: h.get(url+'/openapi.json'),100):.0f}/s")
c=Client(url,user.access_key_id,user.access_key_secret)
path=f"/v1/cas/{ca.sn}/devices/{d.sn}"
print("signed GET device", f"{rate(lambda: c.request('GET',path)):.0f}/s")
print("signed GET /v1/policies/actions", f"{rate(lambda: c.request('GET','/v1/policies/actions')):.0f}/s")
srv.terminate()
