"""nginx (Debian's package) in front of N app workers on loopback ports, with sticky sessions.

A browser's first response sets the cookie `arena_worker=wK` naming the worker that served it; nginx
maps the cookie to that worker's upstream, so every later request of the browser goes to the same
worker, whatever the client address (many participants behind one address are spread over the
workers): the page's events need the process that holds the page's session state, and Gradio's POST
queue/join its SSE GET queue/data on the same process (study votes and images would do on any). Each worker's
upstream lists the other workers as backups: when a worker is down, its browsers go to another
one, whose response sets the cookie anew. Requests without the cookie go round robin.

The workers must believe X-Forwarded-For from nginx only: start them with TRUSTED_PROXIES=127.0.0.1
and --host 127.0.0.1 (deploy.run does)."""
import shutil
import subprocess
import time
from pathlib import Path

from demo.serving import HEADER_TIMEOUT_S

from .process import stop

COOKIE = "arena_worker"
READ_TIMEOUT_S = 3600  # an SSE stream (queue/data, heartbeat) stays open while an event waits and runs
BODY_SLACK_MB = 1  # multipart boundaries on top of the app's --max-upload-mb (the app checks the exact limit)


def binary():
    """The nginx executable on PATH or in /usr/sbin, else None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def worker_name(index):
    """The cookie value and access-log name of the worker at `index` in the worker list."""
    return f"w{index}"


def config(folder, listen, worker_ports, max_upload_mb=25):
    """The nginx.conf text: nginx listening on `listen` ("host:port"), in front of workers on
    127.0.0.1:`worker_ports`; pid, logs and temporary files in `folder`."""
    names = [worker_name(i) for i in range(len(worker_ports))]
    upstreams = []
    for name, port in zip(names, worker_ports):  # the worker first, the others as backups
        backups = "".join(f"        server 127.0.0.1:{other} backup;\n" for other in worker_ports if other != port)
        upstreams.append(f"    upstream arena_{name} {{\n        server 127.0.0.1:{port};\n{backups}"
                         "        keepalive 16;\n    }\n")
    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in worker_ports)
    by_cookie = "".join(f"        {name} arena_{name};\n" for name in names)
    # $upstream_addr lists every server tried ("127.0.0.1:A, 127.0.0.1:B"): the last one answered
    served = "".join(f"        ~:{port}$ {name};\n" for name, port in zip(names, worker_ports))
    return f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    # time, the worker the request's cookie named, the worker that answered, status, request line
    log_format arena '$msec $cookie_{COOKIE} $arena_served $status "$request"';
    access_log {folder}/access.log arena;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size {max_upload_mb + BODY_SLACK_MB}m;
    # a client must send a request's headers in time, as the app's own server requires (demo.serving)
    client_header_timeout {HEADER_TIMEOUT_S}s;
{"".join(upstreams)}    upstream arena_any {{
{servers}        keepalive 16;
    }}
    map $cookie_{COOKIE} $arena_upstream {{
{by_cookie}        default arena_any;
    }}
    map $upstream_addr $arena_served {{
{served}        default "";
    }}
    # set the cookie when the worker that answered is not the one the cookie names (first visit, failover)
    map "$cookie_{COOKIE}/$arena_served" $arena_cookie {{
        "~^(?<same>[^/]*)/\\k<same>$" "";
        "~/$" "";
        default "{COOKIE}=$arena_served; Path=/; HttpOnly; SameSite=Lax";
    }}
    server {{
        listen {listen};
        add_header Set-Cookie $arena_cookie always;
        location / {{
            proxy_pass http://$arena_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout {READ_TIMEOUT_S}s;
            proxy_send_timeout {READ_TIMEOUT_S}s;
            proxy_connect_timeout 5s;
            # a refused connection goes to the next server; a POST already sent is never sent twice
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground with its configuration, pid, logs and temporary files in `folder`."""

    def __init__(self, folder, listen, worker_ports, max_upload_mb=25):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(config(self.folder, listen, worker_ports, max_upload_mb))
        self.process = None

    def start(self):
        """Start nginx; RuntimeError with its log when it is missing or does not start."""
        executable = binary()
        if executable is None:
            raise RuntimeError("nginx is not installed: apt-get install nginx")
        log = self.folder / "error.log"
        command = [executable, "-p", str(self.folder), "-e", str(log), "-c", str(self.conf)]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if checked.returncode:
            raise RuntimeError(f"nginx refused its configuration {self.conf}:\n{checked.stderr}")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx did not start; {log}:\n{log.read_text()[-3000:]}")
        return self

    def log(self):
        """The requests nginx has answered, oldest first: (unix time, worker the cookie named or None,
        worker that answered or None, HTTP status, request line)."""
        path = self.folder / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        entries = []
        for line in lines:
            stamp, named, served, status, request = line.split(" ", 4)
            entries.append((float(stamp), None if named == "-" else named, None if served == "-" else served,
                            int(status), request.strip('"')))
        return entries

    def stop(self):
        """Fast shutdown (SIGTERM); the workers' open connections are closed."""
        stop(self.process)
