"""End-to-end: the status page at / (issue 10, section 3), opened in headless
Chromium (Debian's chromium and chromium-driver, driven by python3-selenium)
and checked for what a person sees: each domain with its primary's state,
the queue count once mail is queued, the chart drawn with data, the last
deliveries and bounces (a peer's reply shown as text, never as markup), a
banner when a primary is down, and no console errors.

MXV_STATUS_SCREENSHOT=PATH saves a screenshot of the page there (the one in
docs/status-page.png was made so).
"""
import os
import re
import shutil
import tempfile
import unittest

import mxv

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # python3-selenium missing
    webdriver = None

try:
    import fwdlib
    Primary = fwdlib.Primary if fwdlib.Controller is not None else None
except ImportError:
    Primary = None

CHROMIUM = shutil.which('chromium')
CHROMEDRIVER = shutil.which('chromedriver')
SENDER = 'someone@up.test'
HOSTILE_REPLY = '550 5.1.1 <b>no</b> such user <script>document.title="owned"</script>'


def browser(profile_dir):
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1100,1150', '--user-data-dir=' + profile_dir, '--no-first-run'):
        opts.add_argument(arg)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@unittest.skipUnless(webdriver and CHROMIUM and CHROMEDRIVER,
                     'needs chromium, chromium-driver and python3-selenium (run with /usr/bin/python3)')
@unittest.skipUnless(Primary, 'needs python3-aiosmtpd (run with /usr/bin/python3)')
class TestStatusPage(unittest.TestCase):
    def setUp(self):
        self.primary_port = mxv.free_port()
        self.p = Primary('127.0.0.1', self.primary_port, 'mx.up.test',
                         rcpt_reply=lambda a: HOSTILE_REPLY if a.startswith('bad@') else None)
        self.addCleanup(self.p.stop)
        self.p.start()
        self.http_port = mxv.free_port()
        closed = mxv.free_port()
        self.d = mxv.Daemon(domains={
            'down.test': {'primary': '127.0.0.1:%d' % closed},
            'up.test': {'primary': '127.0.0.1:%d' % self.primary_port},
        }, hold=False, http_listen='127.0.0.1:%d' % self.http_port, bounce_guard='0%',
            probe_interval='1s', retry_min='1s', retry_max='4s')
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.addCleanup(self.d.stop)
        self.profile = tempfile.mkdtemp(prefix='mxv-chromium-')
        self.addCleanup(shutil.rmtree, self.profile, True)
        self.b = browser(self.profile)
        self.addCleanup(self.b.quit)
        self.b.set_page_load_timeout(20)

    def row(self, domain):
        for tr in self.b.find_elements(By.CSS_SELECTOR, 'table.domains tbody tr'):
            if tr.find_element(By.CSS_SELECTOR, 'td.domain').text == domain:
                return tr
        self.fail('no row for %s' % domain)

    def load(self):
        self.b.get('http://127.0.0.1:%d/' % self.http_port)
        return self.b.find_element(By.TAG_NAME, 'body').text

    def test_what_a_person_sees(self):
        text = self.load()
        self.assertIn('down.test', text)
        self.assertIn('up.test', text)
        self.assertEqual(self.row('down.test').find_element(By.CSS_SELECTOR, 'td.queued').text, '0')

        s = self.d.smtp()
        for i in range(3):
            s.sendmail(SENDER, ['alice@down.test'], mxv.message(SENDER, 'alice@down.test', 'held %d' % i))
        s.sendmail(SENDER, ['alice@up.test'], mxv.message(SENDER, 'alice@up.test'))
        s.sendmail(SENDER, ['bad@up.test'], mxv.message(SENDER, 'bad@up.test'))
        s.quit()
        mxv.wait_until(lambda: len(self.p.deliveries()) >= 2, 20, 'the delivery and the DSN at up.test')

        def page_settled():
            self.load()
            state = self.row('down.test').find_element(By.CSS_SELECTOR, 'td.state').text
            recent = self.b.find_elements(By.CSS_SELECTOR, 'table.recent tbody tr')
            return state.startswith('down since') and len(recent) >= 3
        mxv.wait_until(page_settled, 20, 'the page to show down.test down and three deliveries or bounces')

        down = self.row('down.test')
        self.assertRegex(down.find_element(By.CSS_SELECTOR, 'td.state').text,
                         r'^down since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+s\)$')
        self.assertEqual(down.find_element(By.CSS_SELECTOR, 'td.queued').text, '3')
        self.assertRegex(self.row('up.test').find_element(By.CSS_SELECTOR, 'td.state').text, r'^up since ')
        banner = self.b.find_element(By.CSS_SELECTOR, '.banner')
        self.assertIn('attention', banner.get_attribute('class'))
        self.assertIn('The primary of down.test is down since', banner.text)

        # The chart: the total's line has points, and some are above the baseline (3 messages queued).
        line = self.b.find_element(By.CSS_SELECTOR, 'svg.chart polyline.total')
        points = [tuple(map(float, p.split(','))) for p in line.get_attribute('points').split()]
        self.assertGreaterEqual(len(points), 2)
        baseline = max(y for _, y in points)
        self.assertTrue(any(y < baseline for _, y in points), points)
        self.assertGreater(line.size['width'], 0)

        # The last deliveries and bounces, the peer's reply as text.
        recent = self.b.find_element(By.CSS_SELECTOR, 'table.recent').text
        self.assertRegex(recent, r'delivered\s+alice@up\.test')
        self.assertRegex(recent, r'bounced\s+bad@up\.test')
        self.assertIn('<b>no</b> such user <script>', recent)
        self.assertEqual(self.b.find_elements(By.CSS_SELECTOR, 'table.recent b, table.recent script'), [])
        self.assertNotEqual(self.b.title, 'owned')

        errors = [e for e in self.b.get_log('browser') if e['level'] in ('SEVERE', 'ERROR')]
        self.assertEqual(errors, [])
        shot = os.environ.get('MXV_STATUS_SCREENSHOT')
        if shot:
            self.b.save_screenshot(shot)

    def test_all_clear_banner(self):
        self.load()
        banner = self.b.find_element(By.CSS_SELECTOR, '.banner')
        self.assertIn('ok', banner.get_attribute('class').split())
        self.assertIn('nothing needs attention', banner.text)
        self.assertRegex(self.b.find_element(By.CSS_SELECTOR, '.meta').text, re.compile(r'reloads every \d+ seconds'))
        self.assertEqual([e for e in self.b.get_log('browser') if e['level'] == 'SEVERE'], [])


if __name__ == '__main__':
    unittest.main()
