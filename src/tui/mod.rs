//! `pocketbrain tui`: a full-screen terminal client of the running bridge,
//! over the local API's WebSocket (`/api/v1/ws`) and REST routes.
//!
//! - [`app`]: the state, a plain struct changed by events (unit tested
//!   without a terminal); [`keys`]: what each key does to it;
//! - [`chats`]: the chat list, histories and read marks;
//! - [`view`]: drawing it with ratatui; [`markdown`]: replies' Markdown;
//!   [`link`]: the WhatsApp link pop-up (QR code, phone number, pairing
//!   code) and its keys;
//! - [`net`]: the socket (connected again by itself) and REST calls.
//!
//! Here: the loop that joins them, and the terminal's set-up. The terminal
//! is given back (raw mode off, main screen) on every way out: a return,
//! an error, and a panic (ratatui's hook restores it before the message).

pub mod app;
pub mod chats;
pub mod keys;
pub mod link;
pub mod markdown;
pub mod net;
pub mod view;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self as term_event, Event as TermEvent, KeyEventKind};
use tokio::sync::mpsc;

use app::{Action, App, Event};

/// The conversation the app opens with the owner's token.
pub const DEFAULT_CONVERSATION: &str = "tui";

/// Restores the terminal when dropped.
pub struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Takes the terminal over (raw mode, the alternate screen) and installs
/// the panic hook that gives it back; the guard gives it back when
/// dropped. What `run` does first, public so a test can panic after it.
pub fn enter() -> std::io::Result<(ratatui::DefaultTerminal, Restore)> {
    Ok((ratatui::try_init()?, Restore))
}

/// Runs the app until the user quits.
pub async fn run(
    resolve: net::Resolve,
    credential: crate::config::Secret,
    conversation: &str,
) -> std::io::Result<()> {
    let (mut terminal, _restore) = enter()?;
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(256);
    let (act_tx, act_rx) = mpsc::unbounded_channel::<Action>();
    let stop = Arc::new(AtomicBool::new(false));
    let keys = spawn_keys(ev_tx.clone(), stop.clone());
    let mut net = tokio::spawn(net::run(resolve, credential, ev_tx, act_rx));

    let mut app = App::new(conversation);
    let result = loop {
        if let Err(e) = terminal.draw(|f| view::draw(&app, f)) {
            break Err(e);
        }
        let first = tokio::select! {
            ev = ev_rx.recv() => ev,
            done = &mut net => break Err(std::io::Error::other(format!(
                "the network task ended: {done:?}"
            ))),
        };
        let Some(first) = first else {
            break Ok(());
        };
        // Everything already waiting, then one redraw.
        let mut batch = vec![first];
        while let Ok(ev) = ev_rx.try_recv() {
            batch.push(ev);
        }
        for ev in batch {
            for a in app.update(ev) {
                let _ = act_tx.send(a);
            }
        }
        if app.quitting() {
            break Ok(());
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(act_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), net).await;
    let _ = tokio::task::spawn_blocking(move || keys.join()).await;
    result
}

/// Reads the terminal's keys and resizes on a thread of its own.
fn spawn_keys(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match term_event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return,
            }
            let ev = match term_event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
                // The next draw fits the new size.
                Ok(TermEvent::Resize(..)) => Event::Resized,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.blocking_send(ev).is_err() {
                return;
            }
        }
    })
}
