"""Screenshot of the latent explorer's page in headless Chromium (the README's docs/figures/explorer.png).

  python scripts/explorer_screenshot.py --model runs/quickstart --out docs/figures/explorer.png

Serves `--model` with the explorer on 127.0.0.1 (a free port), opens the page in headless Chromium (Debian's
`chromium` and `chromium-driver`, Selenium from the test extra), sets the first categorical code to `--cls`, the
first continuous code to `--value` (beyond 1 shows the extrapolation marking) and the seed to `--seed`, waits for
the image, and saves the window as PNG.
"""

import argparse
import os
import shutil
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="export, its parent or a run folder")
    parser.add_argument("--out", default="docs/figures/explorer.png")
    parser.add_argument("--cls", type=int, default=3)
    parser.add_argument("--value", type=float, default=1.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", default="1300,760", help="window width,height in CSS pixels")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from tf_ssinfogan.serving import explorer

    ex = explorer.Explorer(explorer.resolve_export(args.model))
    server = explorer.make_server(ex, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={args.size}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(explorer.url_of(server))
        idle = ("const b = document.body.dataset, img = document.getElementById('image');"
                "return b.busy === '0' && img.dataset.seq === b.sent;")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(idle))
        cat = next((c["name"] for c in ex.info["codes"] if c["kind"] == "categorical"), None)
        cont = next((c["name"] for c in ex.info["codes"] if c["kind"] == "continuous"), None)
        driver.execute_script(
            "const [cat, cont, cls, value, seed] = arguments;"
            "document.getElementById('seed').value = String(seed);"
            "if (cat) { const s = document.getElementById('code-' + cat); s.value = String(cls);"
            "           s.dispatchEvent(new Event('change')); }"
            "if (cont) { const r = document.getElementById('code-' + cont + '-0'); r.value = String(value);"
            "            r.dispatchEvent(new Event('input')); }",
            cat, cont, args.cls, args.value, args.seed)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(idle))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        driver.save_screenshot(args.out)
        print(args.out)
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
