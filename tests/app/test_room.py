"""A class that joins in (issue 26): the join address and its QR code, the class gallery, New class.

Nothing here talks to the network: the LAN address is found with a UDP ``connect`` (a route
lookup, no packet) or a stubbed lookup, and the QR code is decoded from its own PNG by the small
reader below, never by opening the address.
"""

import io
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from odenet.app import address
from odenet.app.address import AddressError, join_qr_png, lan_ipv4, page_url, public_url, route_source
from odenet.app.room import (
    GALLERY_SIZE,
    Gallery,
    NotPresenter,
    as_image28,
    mark_server_start,
    new_class,
    plan_new_class,
    require_presenter,
    runs_since_start,
    tally,
    tile,
)

# -- a small QR reader (ISO/IEC 18004 model 2, versions 1-10, byte mode), written from the standard --

# error-correction codewords per block and number of blocks, versions 1..10, by level
_ECC = {"L": (7, 10, 15, 20, 26, 18, 20, 24, 30, 18), "M": (10, 16, 26, 18, 24, 16, 18, 22, 22, 26),
        "Q": (13, 22, 18, 26, 18, 24, 18, 22, 20, 24), "H": (17, 28, 22, 16, 22, 28, 26, 26, 24, 28)}
_BLOCKS = {"L": (1, 1, 1, 1, 1, 2, 2, 2, 2, 4), "M": (1, 1, 1, 2, 2, 4, 4, 4, 5, 5),
           "Q": (1, 1, 2, 2, 4, 4, 6, 6, 8, 8), "H": (1, 1, 2, 4, 4, 4, 5, 6, 8, 8)}
_LEVEL = {1: "L", 0: "M", 3: "Q", 2: "H"}  # the format field's two bits
_MASKS = (lambda r, c: (r + c) % 2 == 0, lambda r, c: r % 2 == 0, lambda r, c: c % 3 == 0,
          lambda r, c: (r + c) % 3 == 0, lambda r, c: (r // 2 + c // 3) % 2 == 0,
          lambda r, c: (r * c) % 2 + (r * c) % 3 == 0, lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
          lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0)


def _gf_tables():
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x = (x << 1) ^ (0x11D if x & 0x80 else 0)
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_EXP, _LOG = _gf_tables()


def _syndromes_zero(block: list[int], n_ecc: int) -> bool:
    """Reed-Solomon check: the block, read as a polynomial, vanishes at alpha^0 .. alpha^(n_ecc-1)."""
    for i in range(n_ecc):
        s = 0
        for byte in block:  # Horner, highest power first
            s = (_EXP[_LOG[s] + i] if s else 0) ^ byte
        if s:
            return False
    return True


def png_modules(png: bytes, scale: int, border: int) -> list[list[int]]:
    """The dark (1) / light (0) modules of a rendered QR code, sampled at each module's centre."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    n = img.shape[0] // scale - 2 * border
    assert img.shape == ((n + 2 * border) * scale,) * 2, "a square image of whole modules"
    quiet = np.concatenate([img[: border * scale].ravel(), img[-border * scale:].ravel()])
    assert quiet.min() > 200, "the quiet zone is light"
    return [[int(img[(border + r) * scale + scale // 2, (border + c) * scale + scale // 2] < 128) for c in range(n)]
            for r in range(n)]


def qr_decode(m: list[list[int]]) -> str:
    """Decode a QR symbol's module matrix (no error correction: every block must check clean)."""
    size = len(m)
    version = (size - 17) // 4
    assert 1 <= version <= 10 and size == 17 + 4 * version
    # format information, first copy (around the top-left finder), bit 0 first
    cells = [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)] + [(8, 14 - i) for i in range(9, 15)]
    fmt = sum(m[r][c] << i for i, (r, c) in enumerate(cells)) ^ 0x5412
    rem = fmt >> 10
    for _ in range(10):  # BCH(15, 5) remainder must match
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    assert (fmt >> 10) << 10 | rem == fmt, "format information is damaged"
    level, mask = _LEVEL[fmt >> 13], (fmt >> 10) & 7
    # function modules: finders + separators + format, timing, alignment, version information
    fn = [[False] * size for _ in range(size)]
    for r in range(size):
        for c in range(size):
            fn[r][c] = (r == 6 or c == 6 or (r < 9 and c < 9) or (r < 9 and c >= size - 8)
                        or (r >= size - 8 and c < 9))
    if version > 1:
        k = version // 7 + 2
        step = (version * 4 + k * 2 + 1) // (k * 2 - 2) * 2
        pos = [6] + sorted(size - 7 - i * step for i in range(k - 1))
        for i, r0 in enumerate(pos):
            for j, c0 in enumerate(pos):
                if (i, j) not in ((0, 0), (0, k - 1), (k - 1, 0)):
                    for r in range(r0 - 2, r0 + 3):
                        for c in range(c0 - 2, c0 + 3):
                            fn[r][c] = True
    if version >= 7:
        for i in range(6):
            for j in range(size - 11, size - 8):
                fn[i][j] = fn[j][i] = True
    # the data area, read in two-column zigzags from the bottom right, unmasked
    bits = []
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5
        upward = ((right + 1) & 2) == 0
        for vert in range(size):
            r = size - 1 - vert if upward else vert
            for c in (right, right - 1):
                if not fn[r][c]:
                    bits.append(m[r][c] ^ int(_MASKS[mask](r, c)))
        right -= 2
    total = len(bits) // 8
    codewords = [int("".join(map(str, bits[8 * i:8 * i + 8])), 2) for i in range(total)]
    n_ecc, n_blocks = _ECC[level][version - 1], _BLOCKS[level][version - 1]
    short = n_blocks - total % n_blocks
    lengths = [total // n_blocks - n_ecc + (i >= short) for i in range(n_blocks)]  # data codewords per block
    blocks: list[list[int]] = [[] for _ in range(n_blocks)]
    it = iter(codewords)
    for i in range(max(lengths)):  # data codewords are interleaved across the blocks, then the ECC ones
        for b in range(n_blocks):
            if i < lengths[b]:
                blocks[b].append(next(it))
    for _ in range(n_ecc):
        for b in range(n_blocks):
            blocks[b].append(next(it))
    assert all(_syndromes_zero(b, n_ecc) for b in blocks), "a Reed-Solomon block does not check"
    data = [x for b, n in zip(blocks, lengths) for x in b[:n]]
    stream = "".join(f"{x:08b}" for x in data)
    assert stream[:4] == "0100", f"byte mode expected, got mode {stream[:4]}"
    start = 12 if version < 10 else 20  # the byte count has 8 bits in versions 1-9, 16 from 10
    count = int(stream[4:start], 2)
    return bytes(int(stream[start + 8 * i:start + 8 * i + 8], 2) for i in range(count)).decode("utf-8")


# -- the join address ------------------------------------------------------------------------------

class _RecordingSocket:
    """A UDP socket stand-in that records what is asked of it; it has no send methods at all."""

    calls: list = []

    def __init__(self, family, kind):
        self.calls.append(("socket", family, kind))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def connect(self, addr):
        self.calls.append(("connect", addr))

    def getsockname(self):
        return ("10.1.2.3", 40000)


def test_lan_address_comes_from_a_route_lookup_that_sends_nothing():
    import socket

    _RecordingSocket.calls = []
    assert route_source(socket_factory=_RecordingSocket) == "10.1.2.3"
    assert _RecordingSocket.calls == [("socket", socket.AF_INET, socket.SOCK_DGRAM), ("connect", ("192.0.2.1", 9))]
    # the probe is TEST-NET-1 (RFC 5737): documentation only, never routed
    import ipaddress

    assert ipaddress.ip_address(address.PROBE_ADDRESS) in ipaddress.ip_network("192.0.2.0/24")


def test_lan_address_falls_back_to_the_interfaces_and_never_to_loopback():
    assert lan_ipv4(route=lambda: None, interfaces=lambda: ["192.168.1.20"]) == "192.168.1.20"
    assert lan_ipv4(route=lambda: "10.0.0.7", interfaces=lambda: ["192.168.1.20"]) == "10.0.0.7"
    assert lan_ipv4(route=lambda: None, interfaces=lambda: []) is None

    class Loopback(_RecordingSocket):
        def getsockname(self):
            return ("127.0.0.1", 1)

    assert route_source(socket_factory=Loopback) is None  # only loopback: nothing the room can open

    class NoRoute(_RecordingSocket):
        def connect(self, addr):
            raise OSError(101, "Network is unreachable")

    assert route_source(socket_factory=NoRoute) is None


def test_the_real_lookups_answer_without_traffic():
    # a UDP connect and an interface ioctl: neither sends a packet; whatever this machine has, the
    # answer is a usable IPv4 or None, never loopback
    import ipaddress

    for ip in [route_source(), *address.interface_addresses(), lan_ipv4()]:
        if ip is not None:
            addr = ipaddress.IPv4Address(ip)
            assert not addr.is_loopback and not addr.is_unspecified


def test_public_url_from_the_listening_address(monkeypatch):
    monkeypatch.delenv("ODENET_PUBLIC_URL", raising=False)
    lan = lambda: "192.168.1.20"  # noqa: E731
    assert public_url("0.0.0.0", 8501, lan=lan) == "http://192.168.1.20:8501"
    assert public_url("", 8502, lan=lan) == "http://192.168.1.20:8502"  # unset = every interface
    assert public_url("10.0.0.5", 8501, lan=lan) == "http://10.0.0.5:8501"  # bound to one address: that one
    assert public_url("demo.example.org", 80, lan=lan) == "http://demo.example.org"
    assert public_url("0.0.0.0", 443, https=True, base_path="/odenet/", lan=lan) == "https://192.168.1.20/odenet"
    assert public_url("fd00::5", 8501, lan=lan) == "http://[fd00::5]:8501"
    # no LAN address: the presenter's browser address if another machine can open it, else unknown
    assert public_url("0.0.0.0", 8501, lan=lambda: None, browser_url="http://10.9.8.7:8501/draw?x=1") \
        == "http://10.9.8.7:8501"
    assert public_url("0.0.0.0", 8501, lan=lambda: None, browser_url="http://localhost:8501/") is None
    # localhost behind a reverse proxy (ODENET_SHARED=1): the LAN address would not reach the app
    assert public_url("localhost", 8501, lan=lan, browser_url="https://lab.example.org/draw") \
        == "https://lab.example.org"
    assert page_url("http://192.168.1.20:8501", "draw") == "http://192.168.1.20:8501/draw"
    assert page_url("http://192.168.1.20:8501/", "") == "http://192.168.1.20:8501/"


def test_public_url_override_and_its_errors(monkeypatch):
    monkeypatch.setenv("ODENET_PUBLIC_URL", "https://lab.example.org/odenet/")
    assert public_url("0.0.0.0", 8501, lan=lambda: "192.168.1.20") == "https://lab.example.org/odenet"
    for bad in ("lab.example.org", "ftp://x.org", "http://", "http://x.org/?a=1"):
        monkeypatch.setenv("ODENET_PUBLIC_URL", bad)
        with pytest.raises(AddressError, match="ODENET_PUBLIC_URL="):
            public_url("0.0.0.0", 8501, lan=lambda: "192.168.1.20")


@pytest.mark.parametrize("url", ["http://192.168.1.20:8501",
                                 "https://lab.example.org/odenet-for-the-whole-class/with/a/rather/long/path/x" * 2])
def test_the_qr_code_png_reads_back_as_the_address(url):
    png = join_qr_png(url, scale=5, border=4)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr_decode(png_modules(png, scale=5, border=4)) == url


def test_the_qr_reader_catches_a_damaged_code():
    m = png_modules(join_qr_png("http://192.168.1.20:8501", scale=5, border=4), 5, 4)
    m[-1][-1] ^= 1  # flip the first data module
    with pytest.raises(AssertionError, match="Reed-Solomon"):
        qr_decode(m)


# -- the gallery ------------------------------------------------------------------------------------

def _img(v: int) -> np.ndarray:
    return np.full((28, 28), v % 256, np.uint8)


def test_a_shared_drawing_is_only_the_28x28_the_prediction_and_flags():
    g = Gallery()
    d = g.add(np.linspace(0, 1, 784).reshape(1, 1, 28, 28), 7, 0.93, False, "session-a")
    assert d.image.dtype == np.uint8 and d.image.shape == (28, 28) and d.image[0, 0] == 0 and d.image[-1, -1] == 255
    assert not d.image.flags.writeable  # one visitor's drawing, read by every presenter tab
    assert (d.digit, d.confidence, d.not_digit, d.said) == (7, 0.93, False, None)
    assert "session-a" not in repr(d) and not hasattr(d, "visitor")  # no name, not even the session id
    assert d.caption() == "7 · 93%" and not d.flagged
    low = g.add(_img(1), 3, 0.41, False, "session-b")
    assert low.low_confidence and low.caption() == "⚠️ 3 · 41%"
    junk = g.add(_img(2), 8, 0.99, True, "session-b")
    assert junk.flagged and junk.caption().startswith("🚫 not a digit")
    wrong = g.add(_img(3), 1, 0.9, False, "session-c", said=7)
    assert wrong.wrong and wrong.caption() == "❌ drew 7, got 1 · 90%"
    assert tally(g.recent()) == {"total": 4, "not_digit": 1, "wrong": 1, "low": 1,
                                 "digits": {7: 1, 3: 1, 8: 1, 1: 1}}
    red, amber = tile(junk), tile(low)
    assert red.shape == (90, 90, 3) and tuple(red[0, 0]) == (220, 38, 38) and tuple(amber[0, 0]) == (245, 158, 11)
    assert (red[3:-3, 3:-3, 0] == 2).all()  # the picture itself, 3x, inside the frame


def test_bad_shares_are_refused():
    g = Gallery()
    for args, match in [((np.zeros((28, 27)), 1, 0.5, False, "v"), "28x28"),
                        ((np.full((28, 28), 2.0), 1, 0.5, False, "v"), r"\[0, 1\]"),
                        ((np.zeros((28, 28), np.int64), 1, 0.5, False, "v"), "uint8 or float"),
                        ((_img(0), 10, 0.5, False, "v"), "digit"),
                        ((_img(0), True, 0.5, False, "v"), "digit"),
                        ((_img(0), 1, float("nan"), False, "v"), "confidence"),
                        ((_img(0), 1, 1.5, False, "v"), "confidence"),
                        ((_img(0), 1, 0.5, False, ""), "visitor")]:
        with pytest.raises(ValueError, match=match):
            g.add(*args)
    assert len(g) == 0
    assert as_image28(np.ones((28, 28), np.float32)).max() == 255


def test_the_gallery_keeps_the_newest_200_newest_first():
    g = Gallery()
    for i in range(250):
        g.add(_img(i), i % 10, 0.9, False, f"visitor-{i}")  # 250 visitors, one drawing each
    items = g.recent()
    assert len(g) == GALLERY_SIZE == len(items) == 200
    assert [d.image[0, 0] for d in items] == [i % 256 for i in range(249, 49, -1)]
    assert [d.id for d in g.recent(3)] == [250, 249, 248] and g.recent(0) == []


def test_one_visitor_cannot_fill_the_wall():
    g = Gallery(capacity=50, per_visitor=5)
    others = [g.add(_img(i), 1, 0.9, False, f"o{i}") for i in range(3)]
    mine = [g.add(_img(100 + i), 2, 0.9, False, "flooder") for i in range(12)]
    kept = g.recent()
    assert [d.id for d in kept if d.digit == 2] == [d.id for d in mine[-5:]][::-1]  # their newest 5
    assert {d.id for d in others} <= {d.id for d in kept} and len(g) == 8


def test_more_strokes_replace_the_same_drawing_but_never_someone_elses():
    g = Gallery()
    first = g.add(_img(1), 1, 0.5, False, "a")
    other = g.add(_img(2), 2, 0.5, False, "b")
    second = g.add(_img(3), 7, 0.9, False, "a", replaces=first.id)
    assert [d.id for d in g.recent()] == [second.id, other.id]  # the refined drawing is the newest
    g.add(_img(4), 4, 0.9, False, "a", replaces=other.id)  # not theirs: added, nothing replaced
    assert len(g) == 3 and other.id in [d.id for d in g.recent()]
    assert g.withdraw("a") == 2 and [d.id for d in g.recent()] == [other.id]


def test_clearing_needs_the_presenter():
    g = Gallery()
    g.add(_img(1), 1, 0.9, False, "a")
    for who in (False, None, "yes", 1):
        with pytest.raises(NotPresenter, match="only the presenter"):
            g.clear(who)
    assert len(g) == 1
    assert g.clear(True) == 1 and len(g) == 0 and g.clear(True) == 0
    with pytest.raises(NotPresenter, match="New class: only the presenter"):
        require_presenter(False, "New class")
    require_presenter(True, "New class")


def test_concurrent_shares_keep_the_bound_and_the_order():
    g = Gallery(capacity=200, per_visitor=1000)
    threads_n, each = 8, 60
    gate = threading.Barrier(threads_n + 1)
    seen_sizes: list[int] = []

    errors: list[BaseException] = []

    def visitor(t: int) -> None:
        gate.wait()
        for i in range(each):
            g.add(_img(i), t, 0.9, False, f"v{t}")
            seen_sizes.append(len(g))

    def reader() -> None:
        gate.wait()
        try:
            for _ in range(200):
                items = g.recent()
                assert len(items) <= 200
                ids = [d.id for d in items]
                assert ids == sorted(ids, reverse=True)  # newest first, always
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(t,)) for t in range(threads_n)]
    threads.append(threading.Thread(target=reader))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert max(seen_sizes) <= 200 and len(g) == 200
    ids = [d.id for d in g.recent()]
    assert ids == list(range(threads_n * each, threads_n * each - 200, -1))  # the 200 newest, none lost or doubled
    per = {t: [d.image[0, 0] for d in g.recent() if d.digit == t] for t in range(threads_n)}
    assert all(v == sorted(v, reverse=True) for v in per.values())  # each visitor's own order is kept


# -- New class -------------------------------------------------------------------------------------

def _run(root, name, status="finished", pid=None):
    run = root / name
    run.mkdir(parents=True)
    st = {"status": status, "config": {}}
    if pid is not None:
        import socket

        st.update(pid=pid, host=socket.gethostname())
    (run / "status.json").write_text(json.dumps(st))
    return run


def test_new_class_deletes_only_the_runs_made_since_the_server_started(tmp_path):
    root = tmp_path / "runs"
    old = _run(root, "before-the-lesson")
    mark_server_start(root)
    mark_server_start(root)  # only the first call counts
    a, b = _run(root, "a-student-run"), _run(root, "another")
    busy = _run(root, "training-now")
    assert runs_since_start(root) == sorted([a, b, busy])
    g = Gallery()
    g.add(_img(1), 1, 0.9, False, "v")
    plan = plan_new_class(active={busy}, runs_dir=root, room=g)
    assert plan.runs == sorted([a, b]) and plan.training == [busy] and plan.drawings == 1
    assert plan.summary().startswith("delete 2 runs made since the server started (")
    assert "clear 1 shared drawing;" in plan.summary() and "1 run(s) still training will be kept" in plan.summary()
    with pytest.raises(NotPresenter):
        new_class(False, active={busy}, runs_dir=root, room=g)
    assert a.is_dir() and len(g) == 1  # refused before anything was touched
    res = new_class(True, active={busy}, runs_dir=root, room=g)
    assert sorted(res.deleted) == ["a-student-run", "another"] and res.cleared == 1 and len(g) == 0
    assert list(res.kept) == ["training-now"] and "is training; stop it first" in res.kept["training-now"]
    assert old.is_dir() and busy.is_dir() and not a.exists() and not b.exists()
    assert runs_since_start(root) == [busy]


def test_new_class_deletes_only_what_the_confirmation_named(tmp_path):
    root = tmp_path / "runs"
    mark_server_start(root)
    named = _run(root, "named")
    plan = plan_new_class(active=set(), runs_dir=root, room=Gallery())
    late = _run(root, "appeared-after-the-confirmation")
    res = new_class(True, active=set(), runs_dir=root, room=Gallery(), only=plan.runs)
    assert res.deleted == ["named"] and not named.exists() and late.is_dir()
    assert plan_new_class(active=set(), runs_dir=root, room=Gallery()).fingerprint != plan.fingerprint


def test_new_class_refuses_a_run_a_live_process_trains(tmp_path):
    root = tmp_path / "runs"
    mark_server_start(root)
    live = _run(root, "cli-run", status="running", pid=os.getppid())  # another live process trains it
    plan = plan_new_class(active=set(), runs_dir=root, room=Gallery())
    assert plan.runs == [] and plan.training == [live]
    res = new_class(True, active=set(), runs_dir=root, room=Gallery())
    assert res.deleted == [] and "training" in res.kept["cli-run"] and live.is_dir()


def test_new_class_never_touches_shipped_models(tmp_path, monkeypatch):
    from odenet.train.checkpoints import PRETRAINED_DIR

    before = sorted(p.name for p in PRETRAINED_DIR.iterdir())
    assert runs_since_start(PRETRAINED_DIR) == []  # even if the runs directory pointed at them
    res = new_class(True, runs_dir=PRETRAINED_DIR, room=Gallery())
    assert res.deleted == [] and sorted(p.name for p in PRETRAINED_DIR.iterdir()) == before
    assert mark_server_start(tmp_path / "r") <= time.time()


# -- the app ---------------------------------------------------------------------------------------

@pytest.fixture
def everywhere():
    """The server listens on every interface (``make run ADDRESS=0.0.0.0``): a shared demo."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)


def _shared(monkeypatch, lan="192.168.1.20"):
    monkeypatch.setenv("ODENET_PRESENTER_TOKEN", "correct horse")
    monkeypatch.delenv("ODENET_PUBLIC_URL", raising=False)
    monkeypatch.delenv("ODENET_SHARED", raising=False)
    monkeypatch.setattr(address, "lan_ipv4", lambda: lan)  # never the machine's real address


def _sidebar_text(at) -> str:
    return " ".join(m.value for m in at.sidebar.markdown)


@pytest.fixture
def media(monkeypatch):
    """The bytes of every image the app sends, by the media file id in its URL."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def record(self, data, mimetype, kind, filename=None):
        file_id = real(self, data, mimetype, kind, filename)
        files[file_id] = data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files


def _shown_png(files: dict[str, bytes], image) -> bytes:
    [url] = image.value
    return files[url.rsplit("/", 1)[-1].split(".")[0]]


def test_the_sidebar_shows_the_join_address_and_its_qr_code(monkeypatch, everywhere, media):
    from tests.support.apptest import page

    _shared(monkeypatch)
    for name in ("home", "gallery"):
        at = page(name)
        assert "http://192.168.1.20:8501" in _sidebar_text(at)
        [qr] = at.sidebar.get("image")
        assert qr.captions == ["Scan to open the lab"]
        assert qr_decode(png_modules(_shown_png(media, qr), scale=5, border=4)) == "http://192.168.1.20:8501"
    monkeypatch.setenv("ODENET_PUBLIC_URL", "https://lab.example.org/odenet")
    at = page("home")
    assert "https://lab.example.org/odenet" in _sidebar_text(at) and "192.168.1.20" not in _sidebar_text(at)
    monkeypatch.setenv("ODENET_PUBLIC_URL", "lab.example.org")
    at = page("home")
    assert any("ODENET_PUBLIC_URL='lab.example.org' is not usable" in e.value for e in at.sidebar.error)


def test_a_local_lab_shows_no_join_block(monkeypatch):
    from tests.support.apptest import page

    monkeypatch.setattr(address, "lan_ipv4", lambda: "192.168.1.20")
    at = page("home")
    assert "Join this class" not in _sidebar_text(at) and not at.sidebar.get("image")


def test_copied_links_use_the_join_address_when_shared(monkeypatch, everywhere, runs):
    from odenet.app.links import link_box_key
    from tests.support.apptest import page

    _shared(monkeypatch)
    at = page("integrators")
    at.session_state[link_box_key("integrators")] = True
    at.run()
    links = [c.value for c in at.code if "integrators" in c.value]
    assert links == ["http://192.168.1.20:8501/integrators", "http://192.168.1.20:8501/integrators?lesson=1"]


def test_the_gallery_page_is_the_presenters(monkeypatch, everywhere):
    from odenet.app.room import gallery
    from tests.support.apptest import page

    _shared(monkeypatch)
    gallery().clear(True)
    gallery().add(_img(200), 4, 0.97, False, "student-1")
    gallery().add(_img(100), 9, 0.35, False, "student-2")
    at = page("gallery")  # a visitor: an explanation, no drawings, no buttons
    assert any("Share my drawings with the room" in i.value for i in at.info)
    assert len(at.get("image")) == len(at.sidebar.get("image")) == 1  # the join QR code only, no wall
    assert not [b for b in at.button if b.key in ("gal_clear", "gal_new_class")]
    at.sidebar.text_input(key="_presenter_token").set_value("correct horse").run()
    assert not at.exception
    [wall] = [i for i in at.get("image") if i.captions != ["Scan to open the lab"]]
    assert wall.captions == ["⚠️ 9 · 35%", "4 · 97%"]  # one grid, newest first, low confidence marked
    assert any("2** drawings" in m.value for m in at.markdown)
    at.button(key="gal_clear").click().run()
    assert len(gallery()) == 0 and any("Cleared 2 drawings" in s.value for s in at.success)


def test_new_class_from_the_gallery_page_needs_the_named_confirmation(monkeypatch, tmp_path):
    from odenet.app.room import gallery
    from tests.support.apptest import page

    gallery().clear(True)
    at = page("gallery")  # localhost: the presenter; app.py recorded the server start for this runs dir
    root = tmp_path / "runs"
    made = [_run(root, f"lesson-run-{i}") for i in range(3)]
    gallery().add(_img(5), 5, 0.9, False, "student")
    at.run()
    [box] = [c for c in at.checkbox if c.key.startswith("gal_confirm_")]
    assert box.label.startswith("Yes, delete 3 runs made since the server started") and "clear 1 shared" in box.label
    assert at.button(key="gal_new_class").disabled
    box.check().run()
    at.button(key="gal_new_class").click().run()
    assert not at.exception
    assert not any(p.exists() for p in made) and len(gallery()) == 0
    assert any("deleted 3 runs and cleared 1 drawing" in s.value for s in at.success)
    [box] = [c for c in at.checkbox if c.key.startswith("gal_confirm_")]
    assert box.label.startswith("Yes, delete 0 runs") and not box.value


def test_share_toggle_and_maybe_share(monkeypatch):
    """share_toggle + maybe_share in a tiny app: off by default; on shares, dedupes reruns, replaces
    more strokes of the same drawing, adds a new drawing; off takes this visitor's drawings down."""
    from streamlit.testing.v1 import AppTest

    from odenet.app.room import gallery

    gallery().clear(True)

    def app():
        import numpy as np
        import streamlit as st

        from odenet.app.room_ui import maybe_share, share_toggle

        share_toggle()
        v = int(st.session_state.get("ink", 50))
        got = maybe_share(np.full((28, 28), v, np.uint8), v % 10, 0.9, False, drawing=st.session_state.get("nonce", 0))
        st.write(f"shared: {got.id if got else None}")

    at = AppTest.from_function(app).run()
    assert not at.exception and at.toggle(key="room_share").value is False
    assert len(gallery()) == 0  # off by default: nothing shared
    assert "28x28" in at.caption[0].value and "no name" in at.caption[0].value and "memory only" in at.caption[0].value
    at.toggle(key="room_share").set_value(True).run()
    assert len(gallery()) == 1
    at.run()
    assert len(gallery()) == 1  # a rerun with the same picture adds nothing
    at.session_state["ink"] = 60
    at.run()
    assert len(gallery()) == 1 and gallery().recent(1)[0].image[0, 0] == 60  # more strokes: replaced
    at.session_state["nonce"] = 1
    at.session_state["ink"] = 70
    at.run()
    assert [d.image[0, 0] for d in gallery().recent()] == [70, 60]  # a new drawing: added
    gallery().add(_img(1), 1, 0.9, False, "someone-else")
    at.toggle(key="room_share").set_value(False).run()
    assert [d.image[0, 0] for d in gallery().recent()] == [1]  # theirs taken down, the others' stay
