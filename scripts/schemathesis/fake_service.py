#!/usr/bin/env python3
"""A do-nothing Tessera service for the schemathesis run, listening on 127.0.0.1 only.

It acknowledges every dispatch at once (202) and never calls back, so the tasks that call it
stay waiting and their per-attempt callback tokens stay live for schemathesis to fuzz
`POST /api/v1/callbacks/{token}` with. Each callback_url it is given goes on one line of
the file named by its second argument.

usage: fake_service.py PORT_FILE CALLBACKS_FILE   (writes the port it bound to PORT_FILE)
"""
import http.server
import sys
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        for url in query.get("callback_url", []):
            with open(sys.argv[2], "a", encoding="utf-8") as f:
                f.write(url + "\n")
        body = b'{"accepted": true}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
