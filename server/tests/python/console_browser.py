"""Drives the relay's web console in headless Chromium (selenium), for server/tests/console.rs.

usage: console_browser.py RELAY_ADDR STREAM SHARDS EMULATOR_URL PRODUCER_BIN SCREENSHOT [TOKEN]

With TOKEN (a relay run with --auth-tokens), the page must first show UNAUTHENTICATED, then
work once the token is pasted in its Token field.

Opens http://RELAY_ADDR/console/#STREAM, checks that it lists the stream and its shards,
starts the live tail with a partition-key filter, writes records with kinesis-producer
(keys key-0, key-1, key-2 in turn), and checks that exactly the filtered records appear,
once each, in order; then pauses, writes more, resumes and checks that the records written
while paused arrive (resumed from the last event id). Prints one line per check and exits
non-zero on the first failure. Every wait has a deadline.
"""

import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

DEADLINE_S = 30


def browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, what, condition):
    try:
        return WebDriverWait(driver, DEADLINE_S, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as err:  # selenium raises TimeoutException; say what was awaited
        raise SystemExit(f"timed out after {DEADLINE_S} s waiting for {what}: {err!r}")


def produce(producer, emulator_url, stream, lines):
    subprocess.run(
        [producer, "--stream", stream, "--endpoint-url", emulator_url, "--region", "us-east-1",
         "--partition-key", "key-{seq%3}", "--linger", "0"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=DEADLINE_S,
        env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
    )


def tail_rows(driver):
    rows = []
    for li in driver.find_elements(By.CSS_SELECTOR, "#records li"):
        key = li.find_elements(By.CSS_SELECTOR, ".key")
        pre = li.find_elements(By.CSS_SELECTOR, "pre")
        if key and pre:
            rows.append((key[0].text, pre[0].text))
    return rows


def main():
    addr, stream, shards, emulator_url, producer, screenshot = sys.argv[1:7]
    token = sys.argv[7] if len(sys.argv) > 7 else None
    shards = int(shards)
    driver = browser()
    try:
        driver.get(f"http://{addr}/console/#{stream}")
        if token:
            wait(driver, "UNAUTHENTICATED without a token",
                 lambda d: "UNAUTHENTICATED" in d.find_element(By.ID, "notice").text)
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
            # The form's handler may run after click() returns: wait for it, with a deadline.
            stored = wait(driver, "the pasted token to be kept",
                          lambda d: d.execute_script("return sessionStorage.getItem('kinesis-relay-token')"))
            local = driver.execute_script("return localStorage.length")
            if stored != token or local != 0:
                raise SystemExit(f"the token should be in sessionStorage only: {stored!r}, localStorage {local}")
            print("without a token: UNAUTHENTICATED; the pasted token is kept in sessionStorage only")
        wait(driver, "the stream in the list",
             lambda d: any(stream in b.text for b in d.find_elements(By.CSS_SELECTOR, "#streams button")))
        wait(driver, f"{shards} shards in the table",
             lambda d: len(d.find_elements(By.CSS_SELECTOR, "#shards tbody tr")) == shards)
        print("console lists the stream and its shards")

        Select(driver.find_element(By.ID, "start")).select_by_value("latest")
        driver.find_element(By.ID, "keys").send_keys("key-1")
        driver.find_element(By.ID, "tail-start").click()
        wait(driver, "the tail to stream", lambda d: d.find_element(By.ID, "tail-state").text == "streaming")

        first = [f'{{"n":{i},"part":"first"}}' for i in range(30)]
        produce(producer, emulator_url, stream, first)
        expected = [f'{{\n  "n": {i},\n  "part": "first"\n}}' for i in range(30) if i % 3 == 1]
        wait(driver, f"{len(expected)} filtered records", lambda d: len(tail_rows(d)) >= len(expected))
        rows = tail_rows(driver)
        keys = {key for key, _ in rows}
        if keys != {"key-1"}:
            raise SystemExit(f"records outside the filter appeared: keys {sorted(keys)}")
        # Records of one key are in one shard: in order.
        if [data for _, data in rows] != expected:
            raise SystemExit(f"tail shows {[d for _, d in rows]}, expected {expected}")
        print(f"tail shows the {len(rows)} records of key-1, in order, and no others")

        driver.find_element(By.ID, "tail-pause").click()
        wait(driver, "the tail to pause", lambda d: d.find_element(By.ID, "tail-state").text == "paused")
        second = [f'{{"n":{i},"part":"second"}}' for i in range(30)]
        produce(producer, emulator_url, stream, second)
        driver.find_element(By.ID, "tail-pause").click()
        more = [f'{{\n  "n": {i},\n  "part": "second"\n}}' for i in range(30) if i % 3 == 1]
        wait(driver, "the records written while paused",
             lambda d: len(tail_rows(d)) >= len(expected) + len(more))
        rows = tail_rows(driver)
        if [data for _, data in rows] != expected + more:
            raise SystemExit(f"after resuming the tail shows {[d for _, d in rows]}")
        print(f"resumed after the pause: {len(more)} more records, none lost or repeated")

        rate = driver.find_element(By.ID, "rate").text
        if not rate.endswith("records/s"):
            raise SystemExit(f"no rate shown: {rate!r}")
        driver.save_screenshot(screenshot)
        print(f"screenshot saved to {screenshot}")

        # Keyboard: Tab alone reaches the tail's controls, and Enter on Pause pauses.
        # Keys go to whatever has the focus (ActionChains), and the focused element is read
        # by script: the console re-renders its tables every refresh, so a reference to the
        # focused element taken from Selenium can be stale by the time keys are sent to it.
        body = driver.find_element(By.TAG_NAME, "body")
        body.click()
        focused = lambda: driver.execute_script(
            "return document.activeElement ? document.activeElement.id : ''")
        for _ in range(40):
            if focused() == "tail-pause":
                break
            ActionChains(driver).send_keys(Keys.TAB).perform()
        else:
            raise SystemExit("Tab never reached the Pause button")
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        wait(driver, "Enter to pause", lambda d: d.find_element(By.ID, "tail-state").text == "paused")
        print("keyboard: Tab reaches the controls, Enter pauses")

        # A phone-sized window: one column, nothing wider than the screen.
        driver.set_window_size(390, 844)
        wait(driver, "the layout to fit a phone-sized window",
             lambda d: d.execute_script(
                 "return document.documentElement.scrollWidth <= window.innerWidth + 1"))
        print("phone-sized window: no horizontal scrolling")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
