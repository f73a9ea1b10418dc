//! `pocketbrain tui` as a person uses it: the real binary in a
//! pseudo-terminal (80×24), its screen parsed as a terminal would show it,
//! against the real bridge (fake channel beside the API), a real `opencode
//! serve` and the scripted model. Every wait is on what the screen shows.

mod support;

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use support::*;

const TOKEN: &str = "owner-token-0123456789abcdef";
// Generous: the first run in a chat boots an OpenCode instance.
const T: Duration = Duration::from_secs(120);

/// The app running in a pty, and the screen it drew.
struct Tui {
    master: Box<dyn MasterPty + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Tui {
    fn start(w: &World, args: &[&str]) -> Tui {
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pocketbrain"));
        cmd.arg("tui");
        cmd.args(args);
        cmd.env_clear();
        cmd.env("PB_DATA_DIR", w.data_dir());
        cmd.env("PB_WORKSPACE", w.workspace());
        cmd.env("PB_HTTP_TOKEN", TOKEN);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: CommandBuilder) -> Tui {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(24).unwrap(),
            NonZeroU16::new(80).unwrap(),
            0,
        )));
        let parsed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parsed.lock().unwrap().process(&buf[..n]);
            }
        });
        Tui {
            master: pair.master,
            child,
            writer,
            screen,
        }
    }

    /// Resizes the parsed screen, then the pty (the app gets SIGWINCH): in
    /// that order, so the app's redraw never lands on the old size.
    fn resize(&self, rows: u16, cols: u16) {
        self.screen.lock().unwrap().screen_mut().set_size(
            NonZeroU16::new(rows).unwrap(),
            NonZeroU16::new(cols).unwrap(),
        );
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// The screen once `done` holds for it; fails past `timeout`.
    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let s = self.contents();
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "the screen never showed {what}; it shows:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, T, |s| s.contains(needle)).await
    }

    fn keys(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Whether the pty is back in cooked mode (canonical input, echo).
    fn cooked(&self) -> bool {
        let fd = self.master.as_raw_fd().expect("a unix pty");
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }

    /// Ctrl-C; the app's exit status, once it ended.
    /// Whether the app's last output left the alternate screen: waits up
    /// to 10 s for the reader thread to parse what the app wrote before it
    /// exited.
    async fn main_screen_back(&self) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while self.screen.lock().unwrap().screen().alternate_screen() {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    async fn quit(&mut self) -> portable_pty::ExitStatus {
        self.keys("\x03");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the app did not quit on Ctrl-C");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A world whose model echoes each message ("stream please" gets a longer
/// reply) and runs a bash command on "run it", reporting its output.
async fn tui_world() -> World {
    let mut w = World::new().await;
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    runs_marker_bash(&w.model);
    w.model.compute(|r| r.last_role() == "user", echo_reply);
    // The owner's main chat: approvals are answered for it.
    w.register(OWNER, "Me", &["--main"]);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_line_gets_its_streamed_reply_and_y_answers_an_approval() {
    let mut w = tui_world().await;
    w.start_bridge().await;
    let mut tui = Tui::start(&w, &[]);
    let s = tui
        .wait("the app online", T, |s| {
            s.contains("online") && s.contains("Message to tui")
        })
        .await;
    assert!(s.contains("Conversations"), "{s}");

    // The input line has the focus: type, Enter, and the reply streams in.
    tui.keys("stream please\r");
    tui.wait_for("you: stream please").await;
    let s = tui.wait_for("lazy dog").await;
    assert!(s.contains("The quick brown fox"), "{s}");

    // The agent asks to run a command: it pops up, whole; `y` runs it once.
    tui.keys("please run it\r");
    let s = tui.wait_for("Approval needed").await;
    assert!(s.contains("bash"), "{s}");
    let shown: String = s.chars().filter(|c| !matches!(c, '│' | '\n')).collect();
    assert!(
        shown.contains("echo ran > marker.txt && echo MARKER_$((6*7))"),
        "{s}"
    );
    assert!(s.contains("y allow once"), "{s}");
    assert!(!w.workspace().join("chats/api-tui/marker.txt").exists());
    tui.keys("y");
    let s = tui.wait_for("MARKER_42").await;
    assert!(s.contains("tool said"), "{s}");
    // The call itself is shown inline, as it went.
    assert!(s.contains("⚙ bash completed"), "{s}");
    assert!(!s.contains("Approval needed"), "{s}");
    assert!(w.workspace().join("chats/api-tui/marker.txt").is_file());

    // The owner's WhatsApp chats are listed; the main chat's history shows
    // the request and the answer, read-only.
    let s = tui.wait_for("wa Me").await;
    assert!(s.contains("fake-connected"), "the link state: {s}");
    tui.keys("\t");
    for _ in 0..5 {
        if tui.contents().contains("> wa Me") {
            break;
        }
        tui.keys("j");
        tui.wait("the list moving", Duration::from_secs(5), |s| {
            s.contains("> ")
        })
        .await;
    }
    tui.wait_for("> wa Me").await;
    tui.keys("\r");
    let s = tui.wait_for("Allowed once").await;
    assert!(s.contains("(read-only)"), "{s}");

    // Quitting gives the terminal back: main screen, cooked mode.
    let status = tui.quit().await;
    assert!(status.success(), "{status:?}");
    assert!(
        tui.main_screen_back().await,
        "the app stayed on the alternate screen"
    );
    assert!(tui.cooked(), "the pty was left in raw mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shows_offline_while_the_bridge_restarts_and_reconnects() {
    let mut w = tui_world().await;
    w.start_bridge().await;
    let mut tui = Tui::start(&w, &["desk"]);
    tui.wait("the app online", T, |s| {
        s.contains("● online") && s.contains("Message to desk")
    })
    .await;
    tui.keys("first\r");
    tui.wait_for("echo: first").await;

    // WhatsApp's link (here the fake phone's) is shown as it changes.
    tui.wait_for("fake-connected").await;
    w.set_link(false).await;
    tui.wait_for("fake-disconnected").await;
    w.set_link(true).await;
    tui.wait_for("fake-connected").await;

    // A bigger terminal: the app redraws to fit it.
    tui.resize(40, 120);
    tui.wait("a 120-column screen", T, |s| {
        s.lines()
            .any(|l| l.chars().count() == 120 && l.ends_with('┐'))
    })
    .await;

    assert_eq!(w.stop_bridge().await.code(), Some(0));
    tui.wait_for("offline, reconnecting").await;
    // A line typed meanwhile is kept, not lost.
    tui.keys("second\r");
    tui.wait_for("offline: the line is kept").await;

    // The bridge comes back (on another port: the app reads it anew).
    w.start_bridge().await;
    tui.wait("the app online again", T, |s| s.contains("● online"))
        .await;
    tui.keys("\r");
    let s = tui.wait_for("echo: second").await;
    // The history came back from the store: the first exchange is shown.
    assert!(s.contains("echo: first"), "{s}");
    let status = tui.quit().await;
    assert!(status.success(), "{status:?}");
    assert!(tui.cooked(), "the pty was left in raw mode");

    // With an API key and no conversation named: the key's own.
    let (ok, out, err) = w.cli(&["api-keys", "create", "laptop"]);
    assert!(ok, "{out}{err}");
    let mut tui = Tui::start(&w, &["--key", out.trim()]);
    tui.wait_for("Message to laptop").await;
    tui.keys("from the key\r");
    tui.wait_for("echo: from the key").await;
    assert!(tui.quit().await.success());
}

/// Not a test of its own: what the next test runs in a pty, as a child
/// process (this test binary again). It takes the terminal as the app does
/// and panics.
#[test]
#[ignore = "run by a_panic_gives_the_terminal_back, in a pty"]
fn panicking_with_the_terminal_taken() {
    // Run by hand (or with --include-ignored), it does nothing.
    if std::env::var_os("PB_TEST_PANIC_CHILD").is_none() {
        return;
    }
    let (_terminal, _restore) = pocketbrain::tui::enter().unwrap();
    // Leak the guard: only the panic hook may give the terminal back.
    std::mem::forget(_restore);
    panic!("on purpose, with the terminal in raw mode");
}

#[tokio::test]
async fn a_panic_gives_the_terminal_back() {
    let mut cmd = CommandBuilder::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "panicking_with_the_terminal_taken",
        "--nocapture",
        "--test-threads=1",
    ]);
    // A short report, so the panic's message stays on the 24 lines.
    cmd.env("RUST_BACKTRACE", "0");
    cmd.env("PB_TEST_PANIC_CHILD", "1");
    let mut tui = Tui::spawn(cmd);
    let end = Instant::now() + T;
    let status = loop {
        if let Some(status) = tui.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the panicking child did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "the child panicked");
    let s = tui
        .wait("the panic message", Duration::from_secs(10), |s| {
            s.contains("on purpose")
        })
        .await;
    assert!(tui.main_screen_back().await, "{s}");
    assert!(tui.cooked(), "the pty was left in raw mode");
}

/// Pairing by phone number from the app: `F2`, `p`, a number and Enter;
/// the bridge's refusals are shown as it words them, and the fake phone's
/// pairing code is shown big, with where to type it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_then_p_takes_a_phone_number_and_shows_the_pairing_code() {
    let mut w = tui_world().await;
    w.start_bridge().await;
    let mut tui = Tui::start(&w, &[]);
    tui.wait("the app online", T, |s| {
        s.contains("● online") && s.contains("fake-connected")
    })
    .await;
    // F2 (as xterm sends it): linked, so no code to show.
    tui.keys("\x1bOQ");
    tui.wait_for("No QR code to scan").await;
    tui.keys("p");
    tui.wait_for("number: ▌").await;
    tui.keys("+49 151 1234 5678\r");
    // Linked: the bridge refuses, and the app says so.
    tui.wait_for("refused (409 Conflict)").await;

    // The link is down: a number that is not one is refused too.
    w.set_link(false).await;
    tui.wait_for("fake-disconnected").await;
    tui.keys("p12\r");
    tui.wait_for("this one has 2").await;
    tui.keys("p+49 151-1234 5678\r");
    // Waited on whole: a frame is drawn top to bottom, and the screen may
    // be read between its lines.
    tui.wait(
        "the pairing code, where to type it, the status bar",
        T,
        |s| {
            s.contains("F A K E - 5 6 7 8")
                && s.contains("Link with phone number instead")
                && s.contains("WhatsApp pairing code")
                && s.contains("F2 pairing code")
        },
    )
    .await;
    // The phone entered it: linked, the code is gone.
    w.set_link(true).await;
    tui.wait("the link up and the code gone", T, |s| {
        s.contains("No QR code to scan: WhatsApp's link is fake-connected")
            && !s.contains("F A K E")
    })
    .await;
    tui.keys("\x1b");
    tui.wait("the pop-up closed", T, |s| !s.contains("No QR code"))
        .await;
    assert!(tui.quit().await.success());
}
