"""End-to-end tests of the control socket itself (issue 10, section 1): who
may connect, how a request is framed and bounded, what a second daemon on
the same spool does. The commands carried over it have their own tests
(test_queue_control.py, test_reload.py, test_drill.py).
"""
import contextlib
import os
import pwd
import socket
import stat
import threading
import time
import unittest

import mxv


class TestControlSocket(unittest.TestCase):
    def setUp(self):
        self.d = mxv.Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.addCleanup(self.d.stop)

    def test_socket_is_private_to_the_daemons_user(self):
        st = os.stat(self.d.control_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        if os.geteuid() == 0:
            self.assertEqual(st.st_uid, pwd.getpwnam('mxvault').pw_uid)

    def test_a_request_is_answered_and_ended_with_an_exit_status(self):
        self.assertEqual(self.d.control('ping'), [('o', b'pong'), ('x', b'0')])

    def test_unknown_and_malformed_requests_are_usage_errors(self):
        cases = {
            'unknown command': dict(raw=b'frobnicate\0now\0\0'),
            'no word': dict(raw=b'\0'),
            'too many words': dict(raw=b'a\0' * 40 + b'\0'),
            'too long': dict(raw=b'a' * 9000),
        }
        for what, kw in cases.items():
            with self.subTest(what):
                reply = self.d.control(**kw)
                self.assertEqual(reply[-1], ('x', b'64'), reply)
                self.assertEqual(reply[0][0], 'e', reply)
        self.assertEqual(self.d.control('ping')[-1], ('x', b'0'))  # still serving

    def test_clients_beyond_the_limit_are_refused_and_the_rest_served(self):
        # 16 clients hold a connection open without finishing their request.
        idle = []
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.d.control_path)
            s.sendall(b'pi')
            idle.append(s)
        self.addCleanup(lambda: [s.close() for s in idle])
        mxv.wait_until(lambda: self.d.control('ping') == [], 5, 'the 17th client to be refused')
        for s in idle:
            s.sendall(b'ng\0\0')
        for s in idle:
            s.settimeout(10)
            got = b''
            while not got.endswith(b'x 0\n'):
                chunk = s.recv(100)
                self.assertTrue(chunk, got)
                got += chunk
        for s in idle:
            s.close()
        mxv.wait_until(lambda: self.d.control('ping') == [('o', b'pong'), ('x', b'0')], 5, 'a free slot')

    def test_refused_clients_do_not_flood_the_log(self):
        idle = []
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.d.control_path)
            idle.append(s)
        self.addCleanup(lambda: [s.close() for s in idle])
        mxv.wait_until(lambda: self.d.control('ping') == [], 5, 'the 17th client to be refused')
        for _ in range(200):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.d.control_path)
                s.settimeout(5)
                with contextlib.suppress(ConnectionResetError):
                    self.assertEqual(s.recv(10), b'')  # refused: closed at once
        lines = [line for line in self.d.log_text().splitlines() if 'refused' in line and 'control' in line]
        self.assertLess(len(lines), 10, '\n'.join(lines[:20]))

    def test_a_client_that_goes_away_mid_request_is_forgotten(self):
        threads = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.d.control_path)
            s.sendall(b'ping')
            t = threading.Thread(target=s.close)
            threads.append(t)
            t.start()
        for t in threads:
            t.join(5)
        mxv.wait_until(lambda: self.d.control('ping') == [('o', b'pong'), ('x', b'0')], 5, 'every slot freed')

    def test_a_request_trickled_a_byte_at_a_time_is_cut_off(self):
        # The request's time limit (10 s) counts from the connect, not from the last byte read.
        s = socket.socket(socket.AF_UNIX)
        self.addCleanup(s.close)
        s.connect(self.d.control_path)
        s.settimeout(0.5)
        start = time.monotonic()
        closed = False
        while not closed and time.monotonic() - start < 25:
            try:
                s.sendall(b'p')
                closed = s.recv(100) == b''
            except socket.timeout:
                pass
            except OSError:
                closed = True
        self.assertTrue(closed, 'a trickling client still connected after 25 s')
        self.assertLess(time.monotonic() - start, 15)

    def test_a_second_daemon_on_the_same_spool_does_not_start(self):
        other = mxv.Daemon(spool=self.d.spool)
        self.addCleanup(other.cleanup)
        with self.assertRaises(AssertionError) as e:
            other.start()
        self.assertIn('a daemon is already running on it', str(e.exception))
        self.assertEqual(self.d.control('ping')[-1], ('x', b'0'))

    def test_a_stale_socket_is_replaced_at_start(self):
        self.d.kill9()
        self.assertTrue(os.path.exists(self.d.control_path))
        self.d.start()
        self.assertEqual(self.d.control('ping')[-1], ('x', b'0'))


if __name__ == '__main__':
    unittest.main()
