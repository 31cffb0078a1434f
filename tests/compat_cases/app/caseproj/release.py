"""Which release this process is.

One source tree serves every release: the image build copies a release's migration
(``releases/<case>/shop/migrations/0002_<case>.py``) on top of it and writes
``release.json`` next to ``manage.py``. ``shop.models`` reads ``CASE`` to declare the
models that go with that migration. Without a release file the code is the base release.
"""
import json
from pathlib import Path

RELEASE_FILE = Path(__file__).resolve().parent.parent / "release.json"


def load_case(path=RELEASE_FILE):
    """The release's name from ``release.json`` (other keys ignored); "base" when there is no file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["name"]
    except FileNotFoundError:
        return "base"


CASE = load_case()
