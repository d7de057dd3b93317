"""Loads the GraphiQL page in headless Chromium, types a query into its editor, runs it with
the execute button, and prints JSON: the response panel's text and every resource the page
loaded (so the caller can check nothing came from outside the server).

Usage: graphiql.py URL QUERY   (TRIBUTARY_CHROMIUM and TRIBUTARY_CHROMEDRIVER name the binaries)

With QUERY `--prefilled`, types nothing: runs the query the page opened with (a link with
`?query=…` tabs) and also prints the tabs' count.
"""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def main(url: str, query: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["TRIBUTARY_CHROMIUM"]
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
        options.add_argument(arg)
    service = Service(executable_path=os.environ["TRIBUTARY_CHROMEDRIVER"])
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 300)  # a failsafe: each wait ends at its DOM condition
        editor = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror")
        )
        if query != "--prefilled":
            editor.click()
            # Replace the default query: select all, delete, type ours key by key.
            actions = ActionChains(driver)
            actions.key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
            actions.send_keys(Keys.DELETE).perform()
            ActionChains(driver).send_keys(query).perform()
        typed = driver.execute_script(
            "return document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
        )
        driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()

        def answered(d):
            text = d.find_element(By.CSS_SELECTOR, ".graphiql-response").text
            return text if '"data"' in text or '"errors"' in text else False

        response = wait.until(answered)
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        tabs = len(driver.find_elements(By.CSS_SELECTOR, ".graphiql-tab"))
        print(json.dumps({"typed": typed, "response": response, "resources": resources, "tabs": tabs}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
