"""Schemathesis hooks for scripts/schemathesis/run.sh (loaded through SCHEMATHESIS_HOOKS).

They keep the fuzzing safe and the seeded state usable, without hiding anything from the checks:

* The pipelines that run.sh seeded (their routes are the only `POST /api/v1/services/...`
  operations in the document) must stay what run.sh made them: a generated pipeline or service
  announcement that claims one of those routes would have the fuzzed service calls run whatever
  it contains (commands, HTTP calls to generated URLs). Such a route is renamed before the call
  (`size` -> `fuzz-size`): the request still exercises the same validation and storage.
* Announced base URLs that point over HTTP(S) are sent to a closed loopback port instead, so no
  generated URL can ever make the engine call out of this machine.
* After any call that may have removed or replaced a seeded pipeline (`DELETE` of a pipeline,
  `POST` of a pipeline or an announcement), the seeded definitions are posted again, so the
  service operations keep reaching the engine instead of 404 for the rest of the run.

Environment: TESSERA_ST_SEED, a JSON file written by run.sh:
  {"protected": ["size", ...], "restore": [{"method", "url", "content_type", "body"}, ...]}
"""

import json
import os
import re

import requests
import schemathesis
import yaml

with open(os.environ["TESSERA_ST_SEED"], encoding="utf-8") as _f:
    _SEED = json.load(_f)
PROTECTED = set(_SEED["protected"])
RESTORE = _SEED["restore"]
# WHATWG URL parsing (the engine's) drops tabs and newlines anywhere and C0/space at the ends.
_URL_JUNK = re.compile(r"[\t\n\r]")
SAFE_URL = "http://127.0.0.1:9"
_LOG = os.environ.get("TESSERA_ST_HOOKLOG")


def _note(what):
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(what + "\n")


def _claims_protected(value):
    return isinstance(value, str) and value.strip().strip("/").lower() in PROTECTED


def _rename(value):
    """A copy of a JSON value with every string naming a protected route renamed."""
    if isinstance(value, dict):
        return {
            ("fuzz-" + k if _claims_protected(k) else k): _rename(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rename(v) for v in value]
    if _claims_protected(value):
        return "fuzz-" + value.strip()
    return value


_LOOPBACK = re.compile(r"https?://127\.0\.0\.1(:[0-9]{1,5})?(/[^\\@]*)?")


def _outbound(url):
    """Could the engine dial this URL anywhere but 127.0.0.1? (errs on the side of yes)"""
    if _LOOPBACK.fullmatch(url):
        return False
    cleaned = _URL_JUNK.sub("", url).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                           "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b"
                                           "\x1c\x1d\x1e\x1f ").lower()
    return cleaned.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))


def _is(case, method, path):
    return case.method.upper() == method and case.path == path


@schemathesis.hook
def before_call(context, case, kwargs):
    if _is(case, "POST", "/api/v1/pipelines"):
        if isinstance(case.body, str):
            try:
                parsed = yaml.safe_load(case.body)
            except Exception:  # not YAML at all: nothing can claim a route
                return
            renamed = _rename(parsed)
            if renamed != parsed:
                _note("renamed a protected route in a YAML pipeline")
                case.body = yaml.safe_dump(renamed, allow_unicode=True)
        elif isinstance(case.body, (dict, list)):
            renamed = _rename(case.body)
            if renamed != case.body:
                _note("renamed a protected route in a JSON pipeline")
                case.body = renamed
    elif _is(case, "POST", "/api/v1/registry/announce") and isinstance(case.body, dict):
        body = _rename(case.body)
        if body != case.body:
            _note("renamed a protected route in an announcement")
        if isinstance(body.get("url"), str) and _outbound(body["url"]):
            _note(f"sent announced url {body['url']!r} to {SAFE_URL}")
            body["url"] = SAFE_URL
        case.body = body


@schemathesis.hook
def after_call(context, case, response):
    if (
        _is(case, "DELETE", "/api/v1/pipelines/{name}")
        or _is(case, "POST", "/api/v1/pipelines")
        or _is(case, "POST", "/api/v1/registry/announce")
    ):
        _note(f"restored the seeded pipelines after {case.method} {case.path} -> {response.status_code}")
        for r in RESTORE:
            got = requests.request(
                r["method"], r["url"], data=r["body"].encode("utf-8"),
                headers={"Content-Type": r["content_type"]}, timeout=10,
            )
            if got.status_code >= 300:
                raise RuntimeError(f"could not restore {r['url']}: {got.status_code} {got.text}")
