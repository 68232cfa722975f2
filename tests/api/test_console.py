"""The web console in a real headless Chromium (Debian's chromium + chromium-driver, Selenium)
against a live `retailklip serve` with API keys, on real Grocery Store photos.

Screenshots go to RETAILKLIP_ARTEFACTS (default: <tmp>/retailklip-artefacts/console); with
RETAILKLIP_CONSOLE_SCREENSHOTS=docs they also replace the README's docs/console-*.png.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageOps, ImageStat
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer, start_server

KEY = "console-test-key"  # an admin key (no role given)
LANE_KEY = "console-lane-key"  # a checkout lane's: classify only
ICONIC = GROCERY / "iconic-images-and-descriptions"
SEEDS = {  # registered through the API before the browser opens
    "banana": ("Banana", "Fruit/Banana", {"category": "fruit"}),
    "granny-smith": ("Granny Smith", "Fruit/Apple/Granny-Smith", {"category": "fruit"}),
    "oatly-oatghurt": (
        "Oatly Natural Oatghurt",
        "Packages/Oatghurt/Oatly-Natural-Oatghurt",
        {"brand": "Oatly"},
    ),
    "red-bell-pepper": (
        "Red Bell Pepper",
        "Vegetables/Pepper/Red-Bell-Pepper",
        {"category": "vegetable"},
    ),
}
LEMON_ICONIC = ICONIC / "Fruit/Lemon/Lemon_Iconic.jpg"
LEMON_SHELF = GROCERY / "test/Fruit/Lemon/Lemon_001.jpg"
WAIT_S = 120  # a classification on a busy 2-core machine
README_SHOTS = {
    "wrong-answer",
    "corrected",
    "box",
    "catalogue",
    "catalogue-filter",
    "phone",
    "review",
    "shelf",
    "barcodes",
    "barcode-read",
}
ARTEFACTS = (
    Path(
        os.environ.get("RETAILKLIP_ARTEFACTS", Path(tempfile.gettempdir()) / "retailklip-artefacts")
    )
    / "console"
)


def iconic(folder: str) -> Path:
    return next((ICONIC / folder).glob("*_Iconic.jpg"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("console")
    live = start_server(base, base / "data", api_keys=f"{KEY}, {LANE_KEY}:classify", review="all")
    try:
        with httpx.Client(base_url=live.url, headers={"X-API-Key": KEY}, timeout=120) as api:
            for sku, (name, folder, metadata) in SEEDS.items():
                path = iconic(folder)
                answer = api.post(
                    "/products",
                    data={"sku": sku, "name": name, "metadata": json.dumps(metadata)},
                    files={"images": (path.name, path.read_bytes(), "image/jpeg")},
                )
                assert answer.status_code == 201, answer.text
        yield live
    finally:
        live.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    # CI installs both (.ci/run); a machine without them fails here rather than skipping.
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
        # Script errors (uncaught exceptions, rejected promises) fail the test; the network
        # errors a test provokes (401 before the key, 400 for a bad photo) are expected.
        errors = [e for e in chrome.get_log("browser") if e["source"] == "javascript"]
        assert not errors, errors
    finally:
        chrome.quit()


def screenshot(browser: WebDriver, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"console-{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    docs = os.environ.get("RETAILKLIP_CONSOLE_SCREENSHOTS")
    if docs and name in README_SHOTS:
        # 256 colours: a third of the bytes in the repository, still readable.
        Image.open(path).convert("RGB").quantize(256).save(REPO / docs / path.name, optimize=True)


def wait(browser: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    def check(driver: WebDriver) -> object:
        error = driver.find_element(By.ID, "error")
        if error.is_displayed() and what != "error":
            raise AssertionError(f"console shows an error while waiting for {what}: {error.text}")
        return condition(driver)

    waiter = WebDriverWait(
        browser, WAIT_S, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
    )
    return waiter.until(check, f"waiting for {what}")


def by_id(browser: WebDriver, element_id: str) -> WebElement:
    return browser.find_element(By.ID, element_id)


def open_console(browser: WebDriver, server: LiveServer, key: str = KEY) -> None:
    """Load `/`: the first API call answers 401 and the console asks for the key."""
    browser.get(server.url + "/")
    wait(browser, lambda b: by_id(b, "key-dialog").get_attribute("open") is not None, "key dialog")
    assert "missing or invalid API key" in by_id(browser, "key-reason").text
    by_id(browser, "key-input").send_keys(key)
    by_id(browser, "key-save").click()
    wait(
        browser,
        lambda b: "of" in by_id(b, "page-info").get_attribute("textContent"),
        "the catalogue's first page",
    )
    stored = browser.execute_script("return sessionStorage.getItem('retailklip.apiKey')")
    assert stored == key


def css(browser: WebDriver, selector: str) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, selector)


def click(browser: WebDriver, selector: str) -> None:
    """Click the first match, again if a re-render replaced it under us."""

    def attempt(b: WebDriver) -> bool:
        css(b, selector)[0].click()
        return True

    WebDriverWait(browser, 30, 0.2, [StaleElementReferenceException, IndexError]).until(attempt)


def skus(browser: WebDriver, selector: str) -> list[str]:
    # One script: the page re-renders lists, so elements found one call earlier may be gone.
    script = "return [...document.querySelectorAll(arguments[0])].map((e) => e.dataset.sku)"
    return browser.execute_script(script, selector)


def shown_skus(browser: WebDriver) -> list[str]:
    return skus(browser, "li.match")


def notice_says(text: str) -> Callable[[WebDriver], bool]:
    return lambda b: text in by_id(b, "notice").text


def pick_photo(browser: WebDriver, path: Path) -> None:
    by_id(browser, "nav-try").click()
    by_id(browser, "photo-input").send_keys(str(path))


def verdict_is(text: str) -> Callable[[WebDriver], bool]:
    return lambda b: by_id(b, "result").is_displayed() and text in by_id(b, "verdict").text


def accept_confirm(browser: WebDriver) -> None:
    WebDriverWait(browser, 10).until(lambda b: b.switch_to.alert)
    browser.switch_to.alert.accept()


def test_register_classify_correct_delete(
    server: LiveServer, api: httpx.Client, browser: WebDriver
) -> None:
    open_console(browser, server)
    browser.refresh()  # the key is entered once per tab: no second dialog
    wait(browser, lambda b: "of 4" in by_id(b, "page-info").get_attribute("textContent"), "page")
    assert by_id(browser, "key-dialog").get_attribute("open") is None

    # A lemon on the shelf, before the catalogue has lemons: the answer can only be wrong.
    pick_photo(browser, LEMON_SHELF)
    wait(browser, lambda b: css(b, "#matches li.match"), "matches")
    shown = shown_skus(browser)
    assert shown and "lemon" not in shown and set(shown) <= set(SEEDS)
    scores = [float(s.text.split()[-1]) for s in css(browser, "li.match .score")]
    assert scores == sorted(scores, reverse=True)
    screenshot(browser, "wrong-answer")

    # Register lemon in the Catalogue page, from its catalogue photo.
    by_id(browser, "nav-catalogue").click()
    by_id(browser, "new-product").click()
    form = by_id(browser, "register-form")
    form.find_element(By.NAME, "sku").send_keys("lemon")
    form.find_element(By.NAME, "name").send_keys("Lemon")
    form.find_element(By.NAME, "metadata").send_keys('{"category": "fruit"}')
    form.find_element(By.NAME, "catalogues").send_keys("store-1, citrus")
    form.find_element(By.NAME, "images").send_keys(str(LEMON_ICONIC))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, notice_says("Registered lemon with 1 image"), "registration")
    wait(browser, lambda b: css(b, "#product-images img"), "its thumbnail")
    product = api.get("/products/lemon").json()
    assert product["name"] == "Lemon" and product["metadata"] == {"category": "fruit"}
    assert product["image_count"] == 1 and product["catalogues"] == ["citrus", "store-1"]
    lemon_reference = product["image_ids"][0]
    # The products that look most like lemon, as the API ranks them.
    alike = [item["sku"] for item in api.get("/products/lemon/similar").json()["similar"]]
    wait(browser, lambda b: skus(b, "#similar-list li") == alike, "the look-alikes")
    assert alike and set(alike) <= set(SEEDS)
    screenshot(browser, "catalogue")

    # Correct the wrong answer: one click makes the shelf photo a reference of lemon.
    by_id(browser, "nav-try").click()
    by_id(browser, "correct-sku").send_keys("lemon")
    by_id(browser, "correct-submit").click()
    wait(browser, notice_says("Added the photo to lemon"), "the correction")
    added = int(re.search(r"reference image #(\d+)", by_id(browser, "notice").text).group(1))
    # The console classifies the photo again: now lemon, by the photo's own reference.
    wait(browser, verdict_is("Lemon (lemon)"), "the corrected answer")
    top = browser.find_element(By.CSS_SELECTOR, "li.match")
    assert top.get_attribute("data-sku") == "lemon"
    assert float(top.find_element(By.CSS_SELECTOR, ".score").text.split()[-1]) > 0.99
    screenshot(browser, "corrected")
    browser.set_window_size(412, 915)  # a phone's width: one column
    browser.execute_script("document.getElementById('result').scrollIntoView()")
    screenshot(browser, "phone")
    browser.set_window_size(1280, 1000)
    assert api.get("/products/lemon").json()["image_ids"] == [lemon_reference, added]
    stored = api.get(f"/products/lemon/images/{added}")
    assert stored.status_code == 200 and stored.content == LEMON_SHELF.read_bytes()
    again = api.post("/classify", files={"image": (LEMON_SHELF.name, LEMON_SHELF.read_bytes())})
    assert again.json()["matches"][0] == {
        **again.json()["matches"][0],
        "sku": "lemon",
        "image_id": added,
    }

    # Catalogue: search, open lemon, delete the corrected image, then the product.
    by_id(browser, "nav-catalogue").click()
    by_id(browser, "search").send_keys("lem")
    wait(browser, lambda b: skus(b, "#product-rows tr") == ["lemon"], "lemon alone in the search")
    click(browser, "#product-rows tr[data-sku=lemon]")
    wait(browser, lambda b: len(css(b, "#product-images figure")) == 2, "its 2 images")
    click(browser, f"figure[data-image-id='{added}'] button.delete-image")
    accept_confirm(browser)
    wait(browser, notice_says(f"Deleted image #{added} of lemon"), "image deletion")
    assert api.get("/products/lemon").json()["image_ids"] == [lemon_reference]
    by_id(browser, "delete-product").click()
    accept_confirm(browser)
    wait(browser, notice_says("Deleted lemon."), "product deletion")
    assert api.get("/products/lemon").status_code == 404
    assert not css(browser, "#product-rows tr[data-sku=lemon]")


@pytest.mark.parametrize("orientation", ["upright", "exif-rotated"])
def test_box_classifies_one_region(
    server: LiveServer, api: httpx.Client, browser: WebDriver, tmp_path: Path, orientation: str
) -> None:
    # One photo, two products side by side: the box picks one of them.
    left = Image.open(iconic(SEEDS["banana"][1])).convert("RGB").resize((400, 400))
    right = Image.open(iconic(SEEDS["oatly-oatghurt"][1])).convert("RGB").resize((400, 400))
    shelf = Image.new("RGB", (800, 400), "white")
    shelf.paste(left, (0, 0))
    shelf.paste(right, (400, 0))
    photo = tmp_path / "two-products.jpg"
    if orientation == "upright":
        shelf.save(photo, quality=95)
    else:
        # As phones store them: pixels sideways, EXIF Orientation 6 (turn 90° clockwise to
        # show). Browser and service must both box the upright picture.
        exif = Image.Exif()
        exif[0x0112] = 6
        shelf.rotate(90, expand=True).save(photo, quality=95, exif=exif)
        assert ImageOps.exif_transpose(Image.open(photo)).size == (800, 400)

    open_console(browser, server)
    pick_photo(browser, photo)
    wait(browser, lambda b: "Whole photo" in by_id(b, "result-scope").text, "whole-photo result")

    # Drag over the right half on screen; the console sends the box in the photo's pixels.
    image = by_id(browser, "photo")
    width, height = image.size["width"], image.size["height"]
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(image, int(width * 0.02), int(-height * 0.45))
    actions.click_and_hold().move_by_offset(int(width * 0.44), int(height * 0.9)).release()
    actions.perform()
    wait(browser, lambda b: "Region [" in by_id(b, "result-scope").text, "the region's result")
    box = [
        int(v)
        for v in re.search(r"Region \[([\d, ]+)\]", by_id(browser, "result-scope").text)
        .group(1)
        .split(",")
    ]
    assert 400 <= box[0] < 440 and box[1] < 40 and 740 < box[2] <= 800 and box[3] > 360, box
    wait(browser, verdict_is("(oatly-oatghurt)"), "oatly in the right half")
    shown = shown_skus(browser)
    if orientation == "upright":
        screenshot(browser, "box")

    # The same box through the API gives the same answer.
    answer = api.post(
        "/classify",
        data={"boxes": json.dumps([box]), "top_k": "5"},
        files={"image": (photo.name, photo.read_bytes())},
    )
    assert answer.status_code == 200, answer.text
    assert [m["sku"] for m in answer.json()["regions"][0]["matches"]] == shown

    # The box survives a visit to the other page, drawn where it was.
    drawn = by_id(browser, "box").rect
    by_id(browser, "nav-catalogue").click()
    by_id(browser, "nav-try").click()
    assert by_id(browser, "box").rect == drawn and drawn["width"] > 100

    # "This is oatly" with a box adds the region, cut from the upright photo, not the whole photo.
    click(browser, "li.match[data-sku='oatly-oatghurt'] button.this-is")
    wait(browser, notice_says("Added the region to oatly-oatghurt"), "the region as a reference")
    added = int(re.search(r"reference image #(\d+)", by_id(browser, "notice").text).group(1))
    try:
        stored = Image.open(io.BytesIO(api.get(f"/products/oatly-oatghurt/images/{added}").content))
        expected = ImageOps.exif_transpose(Image.open(photo)).convert("RGB").crop(tuple(box))
        assert stored.size == expected.size
        difference = ImageChops.difference(stored.convert("RGB"), expected)
        assert max(ImageStat.Stat(difference).mean) < 8  # JPEG noise, not another region
    finally:
        assert api.delete(f"/products/oatly-oatghurt/images/{added}").status_code == 204

    by_id(browser, "clear-box").click()
    wait(browser, lambda b: "Whole photo" in by_id(b, "result-scope").text, "whole photo again")


def test_catalogue_and_filter_narrow_the_search(
    server: LiveServer, api: httpx.Client, browser: WebDriver
) -> None:
    open_console(browser, server)
    by_id(browser, "nav-catalogue").click()
    click(browser, "#product-rows tr[data-sku=banana]")
    wait(browser, lambda b: by_id(b, "catalogues-form").is_displayed(), "the catalogues form")
    by_id(browser, "catalogues-input").send_keys("store-7")
    click(browser, "#catalogues-form button")
    wait(browser, notice_says("banana is now in: store-7"), "catalogues saved")
    try:
        assert api.get("/products/banana").json()["catalogues"] == ["store-7"]

        # Try it, searching store-7 only: the oatly photo can only match banana there.
        pick_photo(browser, iconic(SEEDS["oatly-oatghurt"][1]))
        wait(browser, verdict_is("(oatly-oatghurt)"), "oatly in the whole catalogue")
        select = by_id(browser, "catalogue-select")
        wait(browser, lambda b: "store-7 (1)" in select.text, "store-7 in the catalogue list")
        click(browser, "#catalogue-select option[value='store-7']")
        wait(browser, lambda b: shown_skus(b) == ["banana"], "banana alone in store-7")
        assert "catalogue store-7" in by_id(browser, "result-scope").text
        screenshot(browser, "catalogue-filter")

        # A metadata filter instead: vegetables only.
        click(browser, "#catalogue-select option[value='']")
        by_id(browser, "filter-input").send_keys('{"category": "vegetable"}\t')
        wait(browser, lambda b: shown_skus(b) == ["red-bell-pepper"], "only the vegetable")
        # A key no product has: the API's 4xx and its detail are shown.
        by_id(browser, "filter-input").clear()
        by_id(browser, "filter-input").send_keys('{"colour": "red"}\t')
        wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
        assert re.fullmatch(
            r"POST /classify: 4\d\d filter: .*colour.*", by_id(browser, "error-text").text
        )

        # Adding oatly's own photo to banana: the console shows the near-duplicate warning,
        # then the image is deleted again from the product card.
        by_id(browser, "nav-catalogue").click()
        by_id(browser, "add-images").send_keys(str(iconic(SEEDS["oatly-oatghurt"][1])))
        click(browser, "#add-images-form button")
        wait(browser, notice_says("Added 1 new image(s) to banana"), "the added image")
        assert re.search(
            r"image 1 looks like oatly-oatghurt .*score (0\.9\d\d|1\.000)",
            by_id(browser, "notice").text,
        )
        added = api.get("/products/banana").json()["image_ids"][-1]
        click(browser, f"figure[data-image-id='{added}'] button.delete-image")
        accept_confirm(browser)
        wait(browser, notice_says(f"Deleted image #{added} of banana"), "image deletion")
        assert api.get("/products/banana").json()["image_count"] == 1
    finally:
        api.put("/products/banana/catalogues", json=[])


def test_a_wrong_key_asks_again(server: LiveServer, browser: WebDriver) -> None:
    def asking(key: str | None) -> Callable[[WebDriver], bool]:
        stored = "return sessionStorage.getItem('retailklip.apiKey')"
        return lambda b: (
            by_id(b, "key-dialog").get_attribute("open") is not None
            and b.execute_script(stored) == key
        )

    browser.get(server.url + "/")
    WebDriverWait(browser, WAIT_S).until(asking(None), "the key dialog")
    by_id(browser, "key-input").send_keys("not-the-key")
    by_id(browser, "key-save").click()
    WebDriverWait(browser, WAIT_S).until(asking("not-the-key"), "the key dialog again")
    assert "missing or invalid API key" in by_id(browser, "key-reason").text
    by_id(browser, "key-input").clear()
    by_id(browser, "key-input").send_keys(KEY)
    by_id(browser, "key-save").click()
    text = lambda b: by_id(b, "page-info").get_attribute("textContent")  # noqa: E731
    wait(browser, lambda b: re.fullmatch(r"1–\d+ of \d+", text(b)), "the catalogue's first page")
    assert not by_id(browser, "error").is_displayed()


# What a browser does when a file is dropped (WebDriver cannot drag files from the desktop).
DROP_FILE = """
const [b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const files = new DataTransfer();
files.items.add(new File([bytes], name, { type: "image/jpeg" }));
const drop = document.getElementById("drop");
drop.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
"""


def test_api_errors_are_shown_and_change_nothing(
    server: LiveServer, api: httpx.Client, browser: WebDriver, tmp_path: Path
) -> None:
    open_console(browser, server)
    # Dropped on the drop zone: a text file that calls itself a JPEG.
    browser.execute_script(DROP_FILE, base64.b64encode(b"not a photo at all").decode(), "shelf.jpg")
    wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
    assert by_id(browser, "error-text").text.startswith("POST /classify: 400 image:")
    by_id(browser, "error-close").click()

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(LEMON_SHELF.read_bytes()[:2000])
    pick_photo(browser, truncated)
    wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
    assert by_id(browser, "error-text").text.startswith("POST /classify: 400 image:")

    by_id(browser, "nav-catalogue").click()
    by_id(browser, "new-product").click()
    form = by_id(browser, "register-form")
    form.find_element(By.NAME, "sku").send_keys("bad-metadata")
    form.find_element(By.NAME, "name").send_keys("Bad metadata")
    form.find_element(By.NAME, "metadata").send_keys("not json")
    form.find_element(By.NAME, "images").send_keys(str(LEMON_ICONIC))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda b: "metadata" in by_id(b, "error-text").text, "error")
    assert by_id(browser, "error-text").text == "POST /products: 422 metadata must be a JSON object"
    screenshot(browser, "error")
    assert api.get("/products/bad-metadata").status_code == 404


def test_console_is_self_contained_and_outside_the_contract(server: LiveServer) -> None:
    page = httpx.get(server.url + "/")  # no key: the page holds no data and asks for one
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text)
    web = REPO / "app/web"
    for path in web.rglob("*"):
        if path.is_file():
            text = path.read_text()
            # Air-gapped: nothing may come from another origin.
            assert not re.search(r"https?://|//cdn|@import|fonts\.", text), path
            served = httpx.get(f"{server.url}/console/{path.relative_to(web)}")
            assert served.status_code == 200 and served.content == path.read_bytes()
    assert assets and all(httpx.get(server.url + a).status_code == 200 for a in assets)
    raw = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    raw.request("GET", "/console/../api/console.py")  # sent as is: httpx would normalise it
    assert raw.getresponse().status == 404
    assert httpx.get(server.url + "/products").status_code == 401  # the API still needs the key
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/console") for p in paths)


def test_a_wheel_ships_the_console(tmp_path: Path) -> None:
    """A non-editable install carries every file of app/web (pyproject's package data)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("app", "training", "migrations"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    build = "from setuptools import build_meta as b; print(b.build_wheel('dist'))"
    done = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = source / "dist" / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("app/web/")}
    web = REPO / "app/web"
    expected = {f"app/web/{p.relative_to(web).as_posix()}" for p in web.rglob("*") if p.is_file()}
    assert "app/web/index.html" in expected and shipped == expected


def test_the_review_page_confirms_an_item_with_one_key(
    server: LiveServer, browser: WebDriver, api: httpx.Client
) -> None:
    # Products of their own, in a catalogue of their own: the seeds stay as other tests know them.
    for sku, folder in (("review-kiwi", "Fruit/Kiwi"), ("review-mango", "Fruit/Mango")):
        path = iconic(folder)
        created = api.post(
            "/products",
            data={"sku": sku, "name": sku, "catalogues": "review-test"},
            files={"images": (path.name, path.read_bytes(), "image/jpeg")},
        )
        assert created.status_code == 201, created.text
    assert api.delete("/review").status_code == 204
    shelf = sorted((GROCERY / "test/Fruit/Kiwi").glob("*.jpg"))[0]
    answer = api.post(
        "/classify",
        files={"image": (shelf.name, shelf.read_bytes(), "image/jpeg")},
        data={"catalogue": "review-test"},
    ).json()
    first = answer["matches"][0]["sku"]
    WebDriverWait(api, 30, 0.1).until(lambda c: c.get("/review").json()["total"] == 1)

    open_console(browser, server)
    # Before any photo is chosen there is no (broken) photo, and the header names the model.
    assert not by_id(browser, "photo").is_displayed()
    assert "efficientnet-lite0 (efficientnet-lite0:in1k)" in by_id(browser, "model").text
    by_id(browser, "nav-review").click()
    wait(browser, lambda b: len(css(b, "li.review-item.selected")) == 1, "the review item")
    item = css(browser, "li.review-item")[0]
    suggested = [
        b.get_attribute("data-sku") for b in item.find_elements(By.CSS_SELECTOR, "button.confirm")
    ]
    assert suggested == [m["sku"] for m in answer["matches"]][:3]
    wait(browser, lambda b: len(css(b, "li.review-item img")) == 1, "its photo")
    screenshot(browser, "review")
    images_before = api.get(f"/products/{first}").json()["image_count"]
    browser.find_element(By.TAG_NAME, "body").send_keys("1")  # the keyboard path
    wait(browser, notice_says("is now reference image"), "the confirmation")
    wait(browser, lambda b: not css(b, "li.review-item"), "an empty queue")
    assert api.get("/review").json()["total"] == 0
    assert api.get(f"/products/{first}").json()["image_count"] == images_before + 1


def test_a_classify_key_is_offered_what_it_may_do_and_refused_the_rest(
    server: LiveServer, browser: WebDriver
) -> None:
    open_console(browser, server, key=LANE_KEY)
    wait(
        browser,
        lambda b: "role-classify" in b.find_element(By.TAG_NAME, "body").get_attribute("class"),
        "the role",
    )
    for hidden in ("new-product", "nav-review", "correct-form"):
        assert not by_id(browser, hidden).is_displayed(), hidden
    assert (
        by_id(browser, "nav-try").is_displayed() and by_id(browser, "nav-catalogue").is_displayed()
    )
    pick_photo(browser, LEMON_SHELF)  # classifying is what a lane key is for
    wait(browser, lambda b: by_id(b, "result").is_displayed(), "an answer")
    assert not [b for b in css(browser, "button.this-is") if b.is_displayed()]
    browser.get(server.url + "/#review")  # asked anyway: the API's 403 is shown
    wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
    assert (
        "403 this API key's role is classify; GET /review needs edit"
        in by_id(browser, "error").text
    )


def test_the_catalogue_lists_each_products_first_reference(
    server: LiveServer, api: httpx.Client, browser: WebDriver
) -> None:
    open_console(browser, server)
    by_id(browser, "nav-catalogue").click()
    products = api.get("/products", params={"limit": 100}).json()["items"]
    expected = {p["sku"]: str(p["image_ids"][0]) for p in products}
    rows = """return [...document.querySelectorAll('#product-rows tr')].map((row) => {
        const thumb = row.querySelector('td.photo .thumb');
        const img = row.querySelector('td.photo img');
        return [row.dataset.sku, thumb && thumb.dataset.imageId, img && img.src, img && img.alt];
    })"""

    def all_shown(b: WebDriver) -> list | None:
        shown = b.execute_script(rows)
        return shown if shown and all(r[2] for r in shown) else None

    shown = wait(browser, all_shown, "a thumbnail on every row")
    assert {sku: image_id for sku, image_id, _, _ in shown} == expected
    for sku, image_id, src, alt in shown:
        assert src.startswith("blob:") and alt == f"{sku} image {image_id}"
    # The images really are the thumbnails the API serves (decoded by the browser).
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('#product-rows td.photo img')]"
        ".map((i) => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth])"
    )
    assert all(done and max(w, h) == 96 and shown_w == 48 for done, w, h, shown_w in sizes)


# Barcodes: codes no seed holds, and a shop photo with one on a label (as a product shows it).
EAN13 = "4006381333931"
UPCA = "036000291452"
EAN8 = "96385074"
CODED_SHELF = GROCERY / "test/Fruit/Banana/Banana_002.jpg"
CODED_SHELF_2 = GROCERY / "test/Fruit/Banana/Banana_003.jpg"
# Each code read, as the console lists it: the code, its format, its holder.
READ_CODES = """return [...document.querySelectorAll(arguments[0] + ' li.code')]
    .map((li) => [...li.children].map((e) => e.textContent))"""


def coded_photo(path: Path, shelf: Path = CODED_SHELF, code: str = EAN13) -> Path:
    """A real shop photo, 1044 px, with an EAN-13 on a white label (3 px modules)."""
    photo = Image.open(shelf).convert("RGB").resize((1044, 1044))
    symbol = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.EAN13).to_image(scale=3)
    bars = Image.fromarray(symbol).convert("RGB")
    label = Image.new("RGB", (bars.width + 60, bars.height + 40), "white")
    label.paste(bars, (30, 20))
    photo.paste(label, (photo.width - label.width - 40, photo.height - label.height - 40))
    photo.save(path, quality=92)
    return path


def chips(browser: WebDriver) -> list[str]:
    script = "return [...document.querySelectorAll('#barcode-list li')].map((e) => e.dataset.gtin)"
    shown: list[str] = browser.execute_script(script)
    return shown


def card_is(sku: str) -> Callable[[WebDriver], bool]:
    return lambda b: (
        by_id(b, "product").is_displayed() and by_id(b, "product").get_attribute("data-sku") == sku
    )


def error_says(browser: WebDriver, text: str) -> None:
    wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
    assert by_id(browser, "error-text").text == text
    by_id(browser, "error-close").click()


def add_codes(browser: WebDriver, text: str) -> None:
    field = by_id(browser, "barcodes-input")
    field.clear()
    field.send_keys(text)
    by_id(browser, "barcodes-submit").click()


def find_code(browser: WebDriver, text: str) -> None:
    field = by_id(browser, "barcode-find-input")
    field.clear()
    field.send_keys(text)
    by_id(browser, "barcode-find-submit").click()


def test_a_products_barcodes_are_registered_added_found_and_removed(
    server: LiveServer, api: httpx.Client, browser: WebDriver
) -> None:
    open_console(browser, server)
    by_id(browser, "nav-catalogue").click()
    try:
        # Registered with the product: stored and shown as GTIN-14.
        by_id(browser, "new-product").click()
        form = by_id(browser, "register-form")
        form.find_element(By.NAME, "sku").send_keys("coded-kiwi")
        form.find_element(By.NAME, "name").send_keys("Coded kiwi")
        form.find_element(By.NAME, "barcodes").send_keys(EAN8)
        form.find_element(By.NAME, "images").send_keys(str(iconic("Fruit/Kiwi")))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, notice_says("Registered coded-kiwi with 1 image(s)"), "registration")
        assert "barcode(s) 00000096385074" in by_id(browser, "notice").text
        assert api.get("/products/coded-kiwi").json()["barcodes"] == ["00000096385074"]
        wait(browser, lambda b: chips(b) == ["00000096385074"], "its barcode on the card")

        click(browser, "#product-rows tr[data-sku=banana]")
        wait(browser, card_is("banana"), "banana's card")
        wait(browser, lambda b: by_id(b, "barcode-none").is_displayed(), "no barcode yet")
        # A wrong check digit: the service's 422 names the right one; nothing is stored.
        add_codes(browser, EAN13[:-1] + "2")
        error_says(
            browser,
            "POST /products/banana/barcodes: 422 barcodes[0]: check digit of 4006381333932 "
            "must be 1",
        )
        assert by_id(browser, "barcodes-input").get_attribute("value") == EAN13[:-1] + "2"
        assert api.get("/products/banana").json()["barcodes"] == []
        # Two codes at once (an EAN-13 and a UPC-A), as the API serves them.
        add_codes(browser, f"{EAN13}, {UPCA}")
        wait(browser, notice_says("Added barcodes"), "the codes added")
        assert api.get("/products/banana").json()["barcodes"] == [
            "00036000291452",
            "04006381333931",
        ]
        wait(browser, lambda b: chips(b) == ["00036000291452", "04006381333931"], "the chips")
        assert not by_id(browser, "barcode-none").is_displayed()

        # Another product cannot have it: the 409 names its holder; nothing is stored.
        click(browser, "#product-rows tr[data-sku=granny-smith]")
        wait(browser, card_is("granny-smith"), "granny-smith's card")
        add_codes(browser, EAN13)
        error_says(
            browser,
            "POST /products/granny-smith/barcodes: 409 barcode 04006381333931 is held by product "
            "banana",
        )
        assert api.get("/products/granny-smith").json()["barcodes"] == []

        # Find by barcode, at any length: the UPC-A written as an EAN-13 opens banana's card.
        find_code(browser, "0" + UPCA)
        wait(browser, card_is("banana"), "the code's product")
        assert by_id(browser, "notice").text == f"Barcode 0{UPCA} belongs to banana (Banana)."
        assert by_id(browser, "barcodes-input").get_attribute("value") == ""  # typed for another
        screenshot(browser, "barcodes")
        find_code(browser, EAN8)
        wait(browser, card_is("coded-kiwi"), "the registered code's product")
        find_code(browser, "12345670")  # a valid EAN-8 nobody has
        wait(browser, notice_says("No product has barcode 12345670."), "no product")
        find_code(browser, "12345678")
        error_says(
            browser,
            "GET /products?barcode=12345678: 422 barcode: check digit of 12345678 must be 0",
        )

        # Removed from the card (an admin key): the API no longer serves it.
        click(browser, "#product-rows tr[data-sku=banana]")
        wait(browser, lambda b: len(chips(b)) == 2, "banana's codes")
        click(browser, "#barcode-list li[data-gtin='00036000291452'] button.remove-code")
        accept_confirm(browser)
        wait(browser, notice_says("Removed barcode 00036000291452 from banana."), "removal")
        assert api.get("/products/banana").json()["barcodes"] == ["04006381333931"]
        wait(browser, lambda b: chips(b) == ["04006381333931"], "one chip left")
    finally:
        for gtin in api.get("/products/banana").json()["barcodes"]:
            api.delete(f"/products/banana/barcodes/{gtin}")
        api.delete("/products/coded-kiwi")


def test_codes_read_in_a_photo_are_listed_and_a_confirmed_review_item_attaches_them(
    server: LiveServer, api: httpx.Client, browser: WebDriver, tmp_path: Path
) -> None:
    photo = coded_photo(tmp_path / "banana-with-code.jpg")
    assert api.delete("/review").status_code == 204
    open_console(browser, server)
    try:
        # Try it: the code is read; no product has it yet.
        pick_photo(browser, photo)
        wait(browser, lambda b: by_id(b, "codes").is_displayed(), "the codes read")
        assert browser.execute_script(READ_CODES, "#code-list") == [
            [EAN13, "EAN-13", "not registered"]
        ]
        assert not css(browser, ".code-tag")

        # The photo was kept for review; its item lists the code and what confirming does.
        WebDriverWait(api, 30, 0.1).until(lambda c: c.get("/review").json()["total"] == 1)
        by_id(browser, "nav-review").click()
        wait(browser, lambda b: css(b, "li.review-item .review-codes"), "the item's codes")
        item = css(browser, "li.review-item")[0]
        assert browser.execute_script(READ_CODES, "li.review-item") == [
            [EAN13, "EAN-13", "not registered"]
        ]
        note = item.find_element(By.CSS_SELECTOR, ".code-note").text
        assert note == "Confirming attaches the unregistered barcode to the confirmed product."
        screenshot(browser, "review-barcode")
        item.find_element(By.CSS_SELECTOR, "input.review-sku").send_keys("banana")
        item.find_element(By.CSS_SELECTOR, ".review-other button").click()
        wait(browser, notice_says("Barcode 04006381333931 is now banana's."), "the confirmation")
        assert api.get("/products/banana").json()["barcodes"] == ["04006381333931"]

        # Another photo with the code (not a reference of anything): the code names its product.
        pick_photo(browser, coded_photo(tmp_path / "bananas-with-code.jpg", CODED_SHELF_2))
        wait(browser, verdict_is("Banana (banana)"), "the coded product")
        assert browser.execute_script(READ_CODES, "#code-list") == [
            [EAN13, "EAN-13", "held by banana (Banana)"]
        ]
        top = css(browser, "li.match")[0]
        assert top.get_attribute("data-sku") == "banana"
        assert top.find_element(By.CSS_SELECTOR, ".code-tag").text == f"barcode {EAN13} (EAN-13)"
        browser.set_window_size(1280, 1150)  # the photo's label in the picture
        screenshot(browser, "barcode-read")
        browser.set_window_size(1280, 1000)

        # Shelf: a region's details name the codes read inside it.
        by_id(browser, "nav-shelf").click()
        by_id(browser, "shelf-photo-input").send_keys(str(photo))
        wait(browser, lambda b: by_id(b, "shelf-stage").is_displayed(), "the shelf photo")
        wait(browser, lambda b: "Checking" not in by_id(b, "shelf-submit").text, "idle")
        browser.find_element(By.CSS_SELECTOR, "#shelf-boxes-details summary").click()
        by_id(browser, "shelf-boxes").send_keys("[[0, 0, 1044, 1044]]")
        by_id(browser, "shelf-submit").click()
        wait(browser, lambda b: "the boxes sent" in by_id(b, "shelf-scope").text, "the report")
        [region] = css(browser, "#shelf-overlay .region")
        assert region.get_attribute("data-barcodes") == EAN13
        assert region.get_attribute("title").endswith(f"barcode {EAN13} (EAN-13, banana)")
    finally:
        for gtin in api.get("/products/banana").json()["barcodes"]:
            api.delete(f"/products/banana/barcodes/{gtin}")
        api.delete("/review")


# The Shelf page: a shelf photo composed from Grocery Store images with known rows, on a
# server of its own with the shipped encoder (whose calibrated tiers answer all three verdicts)
# and no product detector, so the boxes are drawn or pasted on the page.
SHELF_PRODUCTS = {  # sku: (name, folder, brand); all in catalogue store-1
    "oatly-oat-milk": ("Oatly Oat Milk", "Packages/Oat-Milk/Oatly-Oat-Milk", "Oatly"),
    "arla-milk": ("Arla Standard Milk", "Packages/Milk/Arla-Standard-Milk", "Arla"),
    "arla-medium-milk": ("Arla Medium Fat Milk", "Packages/Milk/Arla-Medium-Fat-Milk", "Arla"),
    "tropicana-apple": (
        "Tropicana Apple Juice",
        "Packages/Juice/Tropicana-Apple-Juice",
        "Tropicana",
    ),
    "arla-yoghurt": (
        "Arla Mild Vanilla Yoghurt",
        "Packages/Yoghurt/Arla-Mild-Vanilla-Yoghurt",
        "Arla",
    ),
}
FACE = 200  # px: each facing's square on the shelf photo
# Catalogue fronts, one real shop photo of a milk close to another (ambiguous), a lemon the
# catalogue does not have (unknown), and a gap two facings wide on the bottom shelf.
MEDIUM_MILK_PHOTO = GROCERY / "test/Packages/Milk/Arla-Medium-Fat-Milk/Arla-Medium-Fat-Milk_003.jpg"
SHELF_LAYOUT = [
    ["oatly-oat-milk", "oatly-oat-milk", "arla-milk", "tropicana-apple", MEDIUM_MILK_PHOTO],
    ["tropicana-apple", "arla-yoghurt", None, None, "arla-yoghurt", LEMON_ICONIC],
]
SHELF_PLAN = {  # two swapped, and a third shelf the photo does not have
    "shelves": [
        [
            {"sku": "oatly-oat-milk", "facings": 2},
            {"sku": "tropicana-apple"},
            {"sku": "arla-milk"},
            {"sku": "arla-medium-milk"},
        ],
        [{"sku": "tropicana-apple"}, {"sku": "arla-yoghurt", "facings": 2}],
        [{"sku": "kefir"}],
    ]
}
VERDICT_COLOURS = {  # console.css --confident, --ambiguous, --unknown
    "confident": "rgb(21, 128, 61)",
    "ambiguous": "rgb(180, 83, 9)",
    "unknown": "rgb(185, 28, 28)",
}


def shelf_photo() -> tuple[Image.Image, list[list[int]]]:
    """The layout on a grey wall with a board under each row: the photo and its boxes."""
    row_height = FACE + 40
    canvas = Image.new("RGB", (FACE * 6 + 40, row_height * 2 + 20), (120, 120, 120))
    boxes = []
    for r, row in enumerate(SHELF_LAYOUT):
        top = 20 + r * row_height
        canvas.paste((92, 64, 40), (0, top + FACE, canvas.width, top + FACE + 16))
        for p, facing in enumerate(row):
            if facing is None:
                continue
            path = facing if isinstance(facing, Path) else iconic(SHELF_PRODUCTS[facing][1])
            face = Image.open(path).convert("RGB").resize((FACE - 8, FACE - 8))
            x = 20 + p * FACE
            canvas.paste(face, (x + 4, top + 4))
            boxes.append([x + 4, top + 4, x + FACE - 4, top + FACE - 4])
    return canvas, boxes


@pytest.fixture(scope="module")
def shelf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("console-shelf")
    live = start_server(
        base, base / "data", api_keys=KEY, model="retailklip-lite0-shelf", detector="off"
    )
    try:
        with httpx.Client(base_url=live.url, headers={"X-API-Key": KEY}, timeout=120) as api:
            for sku, (name, folder, brand) in SHELF_PRODUCTS.items():
                path = iconic(folder)
                made = api.post(
                    "/products",
                    data={
                        "sku": sku,
                        "name": name,
                        "metadata": json.dumps({"brand": brand}),
                        "catalogues": "store-1",
                    },
                    files={"images": (path.name, path.read_bytes(), "image/jpeg")},
                )
                assert made.status_code == 201, made.text
            path = iconic("Fruit/Banana")  # in no catalogue: store-1 leaves it out
            made = api.post(
                "/products",
                data={"sku": "banana", "name": "Banana"},
                files={"images": (path.name, path.read_bytes(), "image/jpeg")},
            )
            assert made.status_code == 201, made.text
        yield live
    finally:
        live.stop()


def drag(browser: WebDriver, image: WebElement, box: list[int], natural: int) -> None:
    """Drag over `box` (the photo's pixels) on the displayed photo, `natural` px wide."""
    rect = image.rect
    k = rect["width"] / natural
    start = (box[0] * k - rect["width"] / 2 + 1, box[1] * k - rect["height"] / 2 + 1)
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(image, int(start[0]), int(start[1]))
    actions.click_and_hold()
    actions.move_by_offset(int((box[2] - box[0]) * k), int((box[3] - box[1]) * k)).release()
    actions.perform()


# Every box on the photo, and the photo itself, in screen pixels.
OVERLAY = """
const rect = (e) => {
    const r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
};
const photo = document.getElementById('shelf-photo');
const style = (e) => getComputedStyle(e);
return {
    photo: [...rect(photo), photo.naturalWidth],
    regions: [...document.querySelectorAll('#shelf-overlay .region')].map((e) => ({
        rect: rect(e), label: e.textContent, verdict: e.dataset.verdict, sku: e.dataset.sku,
        border: style(e).borderTopColor, labelColour: style(e.firstChild).backgroundColor,
    })),
    gaps: [...document.querySelectorAll('#shelf-overlay .gap')].map((e) => ({
        rect: rect(e), border: style(e).borderTopStyle,
    })),
    pending: document.querySelectorAll('#shelf-overlay .pending').length,
};
"""


def assert_drawn_at(
    photo: list[float], rects: list[list[float]], boxes: Sequence[Sequence[float]]
) -> None:
    """Each box where its pixels of the photo are on screen, whatever the displayed size."""
    left, top, right, _, natural = photo
    k = (right - left) / natural
    assert len(rects) == len(boxes)
    for shown, box in zip(rects, boxes, strict=True):
        expected = [left + box[0] * k, top + box[1] * k, left + box[2] * k, top + box[3] * k]
        assert all(abs(a - b) < 1.5 for a, b in zip(shown, expected, strict=True)), (shown, box)


def table(browser: WebDriver, element_id: str) -> list[list[str]]:
    script = """return [...document.getElementById(arguments[0]).tBodies[0].rows]
        .map((row) => [...row.cells].map((cell) => cell.textContent))"""
    rows: list[list[str]] = browser.execute_script(script, element_id)
    return rows


def test_the_shelf_page_draws_and_lists_what_post_shelf_found(
    shelf_server: LiveServer, browser: WebDriver, tmp_path: Path
) -> None:
    photo, boxes = shelf_photo()
    path = tmp_path / "shelf.jpg"
    photo.save(path, quality=95)
    open_console(browser, shelf_server)
    by_id(browser, "nav-shelf").click()
    by_id(browser, "shelf-photo-input").send_keys(str(path))
    # No detector here: the page says how to give the boxes instead of sending the photo alone.
    wait(browser, lambda b: by_id(b, "shelf-help").is_displayed(), "the no-detector help")
    assert "no product detector" in by_id(browser, "shelf-help").text
    assert not by_id(browser, "shelf-result").is_displayed()
    # Sent anyway: the service's 422 is shown as every error is.
    by_id(browser, "shelf-submit").click()
    wait(browser, lambda b: by_id(b, "error").is_displayed(), "error")
    assert by_id(browser, "error-text").text == (
        "POST /shelf: 422 boxes: required, this service has no product detector "
        "(RETAILKLIP_DETECTOR)"
    )
    by_id(browser, "error-close").click()

    # A box dragged on the photo lands in the boxes field in the photo's pixels.
    drag(browser, by_id(browser, "shelf-photo"), boxes[0], photo.width)
    field = by_id(browser, "shelf-boxes")
    wait(browser, lambda b: field.get_attribute("value"), "the drawn box")
    [drawn_box] = json.loads(field.get_attribute("value"))
    assert all(abs(a - b) <= 6 for a, b in zip(drawn_box, boxes[0], strict=True)), drawn_box
    assert by_id(browser, "shelf-box-count").text == "1 drawn"
    assert browser.execute_script(OVERLAY)["pending"] == 1
    # The rest pasted: the whole layout's boxes replace the drawn one.
    browser.find_element(By.CSS_SELECTOR, "#shelf-boxes-details summary").click()
    field.clear()
    field.send_keys(json.dumps(boxes))
    assert by_id(browser, "shelf-box-count").text == f"{len(boxes)} drawn"

    click(browser, "#shelf-catalogue-select option[value='store-1']")
    by_id(browser, "shelf-group-by").send_keys("brand")
    by_id(browser, "shelf-planogram").send_keys(json.dumps(SHELF_PLAN))
    by_id(browser, "shelf-must-have").send_keys("arla-milk, kefir")
    by_id(browser, "shelf-submit").click()
    wait(browser, lambda b: by_id(b, "shelf-result").is_displayed(), "the shelf's report")

    # The same request through the API: what the page shows is what the service answered.
    with httpx.Client(base_url=shelf_server.url, headers={"X-API-Key": KEY}, timeout=120) as api:
        answer = api.post(
            "/shelf",
            data={
                "boxes": json.dumps(boxes),
                "catalogue": "store-1",
                "group_by": "brand",
                "planogram": json.dumps(SHELF_PLAN),
                "must_have": ["arla-milk", "kefir"],
            },
            files={"image": (path.name, path.read_bytes(), "image/jpeg")},
        )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    regions = report["regions"]
    iconic_skus = [f for row in SHELF_LAYOUT for f in row if isinstance(f, str)]
    assert [r["matches"][0]["sku"] for r in regions if r["verdict"] == "confident"] == iconic_skus
    assert [r["verdict"] for r in regions if r["verdict"] != "confident"] == [
        "ambiguous",
        "unknown",
    ]

    # Every region boxed where it is, named in its verdict's colour; the gap dashed.
    drawn = browser.execute_script(OVERLAY)
    assert drawn["pending"] == 0
    assert_drawn_at(drawn["photo"], [r["rect"] for r in drawn["regions"]], boxes)
    names = {sku: name for sku, (name, _, _) in SHELF_PRODUCTS.items()}
    expected_labels = [
        {"confident": names.get(r["matches"][0]["sku"]), "unknown": "unknown"}.get(
            r["verdict"], f"{names.get(r['matches'][0]['sku'])}?"
        )
        for r in regions
    ]
    on_photo = ["?" if label == "unknown" else label for label in expected_labels]
    assert [r["label"] for r in drawn["regions"]] == on_photo
    assert "Arla Medium Fat Milk?" in expected_labels
    assert [r["verdict"] for r in drawn["regions"]] == [r["verdict"] for r in regions]
    for shown in drawn["regions"]:
        assert shown["border"] == shown["labelColour"] == VERDICT_COLOURS[shown["verdict"]]
    [gap] = report["gaps"]
    assert (gap["shelf"], gap["after"], gap["width"]) == (1, 1, 2 * FACE + 8)
    assert [g["border"] for g in drawn["gaps"]] == ["dashed"]
    assert_drawn_at(drawn["photo"], [g["rect"] for g in drawn["gaps"]], [gap["box"]])
    assert [li.text for li in css(browser, "#shelf-gaps li")] == [
        "Shelf 2, after facing 2: 408 px empty"
    ]
    assert by_id(browser, "shelf-summary").text == "9 facings on 2 shelves, 1 gap"

    # The rows, left to right, with the gap where it is.
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#shelf-rows > li')]"
        ".map((li) => [...li.querySelectorAll('.chip')].map((c) => c.textContent))"
    )
    assert rows == [
        expected_labels[:5],
        [*expected_labels[5:7], "gap", *expected_labels[7:]],
    ]

    # Facings per SKU, the unrecognised last; and per brand.
    facings = table(browser, "shelf-facings")
    assert facings == [
        [
            f["sku"] or "unknown",
            f["name"] or "not recognised",
            str(f["count"]),
            f"{f['share'] * 100:.1f}%",
            f"{f['width_share'] * 100:.1f}%",
        ]
        for f in report["facings"]
    ]
    counts = {row[0]: int(row[2]) for row in facings}
    assert counts == {
        "oatly-oat-milk": 2,
        "tropicana-apple": 2,
        "arla-yoghurt": 2,
        "arla-milk": 1,
        "arla-medium-milk": 1,
        "unknown": 1,
    }
    assert facings[-1][0] == "unknown"
    assert {row[0]: row[1] for row in table(browser, "shelf-groups")} == {
        "Arla": "4",
        "Oatly": "2",
        "Tropicana": "2",
        "unknown, or without the key": "1",
    }

    # Must-haves and the planogram: the non-ok places stand out.
    assert [li.text for li in css(browser, "#shelf-missing li")] == ["kefir"]
    plan = report["planogram"]
    assert by_id(browser, "shelf-score").text == (
        f"{plan['score'] * 100:.1f}% in place (6 of 9 planned facings)"
    )
    statuses = [p["status"] for p in plan["positions"]]
    assert statuses == [
        "ok",
        "ok",
        "wrong_product",
        "wrong_product",
        "ok",
        "ok",
        "ok",
        "ok",
        "missing",
    ]
    positions = table(browser, "shelf-positions")
    assert [row[4] for row in positions] == [s.replace("_", " ") for s in statuses]
    assert [row[2:4] for row in positions][2:4] == [
        ["tropicana-apple", "arla-milk"],
        ["arla-milk", "tropicana-apple"],
    ]
    assert positions[-1] == ["3", "1", "kefir", "—", "missing"]
    backgrounds = browser.execute_script(
        "return [...document.querySelectorAll('#shelf-positions tbody tr')]"
        ".map((tr) => getComputedStyle(tr.cells[0]).backgroundColor)"
    )
    ok_colour = backgrounds[0]
    assert all((b != ok_colour) == (s != "ok") for b, s in zip(backgrounds, statuses, strict=True))
    browser.set_window_size(1280, 1650)  # the report's whole column in the picture
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, "shelf")

    # On a phone the boxes follow the smaller photo.
    browser.set_window_size(412, 915)
    small = browser.execute_script(OVERLAY)
    assert small["photo"][2] - small["photo"][0] < 400
    assert_drawn_at(small["photo"], [r["rect"] for r in small["regions"]], boxes)
    browser.execute_script("document.getElementById('shelf-stage').scrollIntoView()")
    screenshot(browser, "shelf-phone")
    browser.set_window_size(1280, 1000)
