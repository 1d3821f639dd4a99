import re
from pathlib import Path
from .test_admin import administrator, conversation, _cheap_password_hashes, _fresh_throttle, make_staff, sign_in, csrf_token  # noqa

def test_dump(app, administrator, conversation):
    form = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    r = administrator.post("/admin/api-keys/new/", data={"org_id": "", "name": "x", "csrf_token": csrf_token(form)})
    r2 = administrator.post("/admin/api-keys/new/", data={"org_id": "", "name": "x"})
    Path("/tmp/dump.txt").write_text(r.get_data(as_text=True) + "\n=====2 %s\n" % r2.status_code + r2.get_data(as_text=True))
