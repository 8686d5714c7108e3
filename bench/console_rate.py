"""How the web console's page holds up under a fast stream: serves the console's own files
(server/src/web/console/) and a synthetic Server-Sent Events stream of RATE records/s (the
relay's event format), opens the page in headless Chromium (selenium), tails the stream,
and prints the records/s the page counted, how long scripts waited for the page's main
thread (the worst of 20 round trips), and how long Pause took to show.

usage: python3 bench/console_rate.py [RATE]   (default 10000; needs what
scripts/peers.sh installs: Chromium, chromedriver, selenium)

A synthetic source, because the relay on the embedded emulator of a 2-core machine does not
reach 10,000 records/s while the browser runs beside it; this measures the page alone.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CONSOLE = Path(__file__).resolve().parents[1] / "server/src/web/console"
TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
RATE = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def record_event(n):
    data = json.dumps({"n": n, "sensor": f"sensor-{n % 10}", "temperature": 20.5})
    record = {"shardId": "shardId-0", "sequenceNumber": str(n), "partitionKey": f"sensor-{n % 10}",
              "approximateArrivalTimestamp": "2026-12-02T06:00:00Z", "dataEncoding": "utf8",
              "data": data}
    return f"id: c{n}\ndata: {json.dumps(record)}\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body, content_type):
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/console/"):
            name = path[len("/console/"):] or "index.html"
            if name not in ("index.html", "console.js", "console.css", "tail-worker.js"):
                return self.reply(b"", "text/plain")
            return self.reply((CONSOLE / name).read_bytes(), TYPES[name.rsplit(".", 1)[1]])
        if path == "/v1/streams":
            body = {"streams": [{"name": "demo", "shardCount": 1, "status": "STREAM_STATUS_ACTIVE"}]}
            return self.reply(json.dumps(body).encode(), "application/json")
        if path == "/v1/streams/demo":
            body = {"stream": "demo", "status": "STREAM_STATUS_ACTIVE", "subscriberCount": 1,
                    "shards": [{"shardId": "shardId-0", "state": "SHARD_STATE_READING",
                                "millisBehindLatest": 0, "recordsHeld": 0, "bytesHeld": 0}]}
            return self.reply(json.dumps(body).encode(), "application/json")
        if path == "/v1/streams/demo/records":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            sent, start = 0, time.time()
            while True:
                due = int((time.time() - start) * RATE)
                events = "".join(record_event(n) for n in range(sent, due))
                sent = max(sent, due)
                try:
                    if events:
                        self.wfile.write(events.encode())
                        self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.005)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/console/#demo")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shards tbody tr"))
        driver.find_element(By.ID, "tail-start").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "tail-state").text == "streaming")
        time.sleep(5)  # a measurement window, not a wait for a condition
        worst, rates = 0.0, []
        for _ in range(20):
            began = time.time()
            rates.append(driver.execute_script("return document.getElementById('rate').textContent"))
            worst = max(worst, time.time() - began)
            time.sleep(0.25)
        began = time.time()
        driver.find_element(By.ID, "tail-pause").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "tail-state").text == "paused")
        paused = time.time() - began
        sampling = driver.find_element(By.ID, "sampling").text
        print(f"offered {RATE} records/s; the page counted {rates[-1]} ({sampling or 'drawing all'})")
        print(f"worst script round trip {worst * 1000:.0f} ms; Pause shown after {paused * 1000:.0f} ms")
    finally:
        driver.quit()
        server.shutdown()


if __name__ == "__main__":
    main()
