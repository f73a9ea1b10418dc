//! [`App::run`]: the parts run until shutdown.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::approvals::{ApprovalSettings, Approvals};
use crate::config::ChannelKind;
use crate::intake::{Intake, OwnerChat};
use crate::ipc::{self};
use crate::opencode::OpenCode;
use crate::opencode::events::EventHub;
use crate::opencode::server::ManagedServer;
use crate::queue::{ChatQueue, RetryPolicy, Wake};
use crate::run::{RunSettings, Runner};
use crate::{http, scheduler, sender};

use super::{App, HTTP_ADDR_FILE, StartError};

impl App {
    /// Runs until `shutdown` resolves, then stops every task (waiting up to
    /// 15 s), the OpenCode server it started included.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let Self {
            config,
            store,
            listener,
            addr,
            channel,
            main_channel,
            api,
            fake,
            whatsapp,
            ipc_dirs,
            managed,
            client,
            _lock,
        } = self;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();

        let hub = EventHub::new();
        tracker.spawn(
            hub.clone()
                .run(client.clone(), config.stream_watchdog, cancel.clone()),
        );
        let (asks_tx, asks_rx) = tokio::sync::mpsc::channel(256);
        tracker.spawn(crate::opencode::events::forward_asks(
            hub.clone(),
            asks_tx.clone(),
            cancel.clone(),
        ));
        let opencode = Arc::new(
            OpenCode::new(client.clone(), hub.clone(), config.opencode_model.clone())
                .with_instance_limit(config.opencode_max_instances),
        );
        let agent: Arc<dyn Agent> = opencode.clone();
        let queue = ChatQueue::new(
            config.max_concurrent_sessions,
            RetryPolicy {
                base: config.retry_base,
                max_delay: Duration::from_secs(300),
                attempts: config.retry_attempts,
            },
        );
        let wakes = Wakes::new();
        tracker.spawn(wakes.clone().fan_out(cancel.clone()));
        let settings = RunSettings::from_config(&config);
        let approvals = Approvals::new(
            store.clone(),
            agent.clone(),
            channel.clone(),
            wakes.outbox.clone(),
            ApprovalSettings {
                timeout: config.approval_timeout,
                main_policy: config.permission,
                persona: settings.persona.clone(),
                workspace: config.workspace.clone(),
                message_limit: config.wa_chunk_limit,
            },
        );
        // (Each time the stream opens, OpenCode's pending requests are read
        // again: what was asked while the bridge was down, what it forgot.)
        drop(asks_tx);
        tracker.spawn(approvals.clone().run(asks_rx, cancel.clone()));
        let api_approvals = approvals.clone();
        let stops = crate::run::Stops::default();
        let mut intake = Intake::new(store.clone(), queue.clone(), settings.persona.clone())
            .with_approvals(approvals)
            .with_commands(crate::commands::Commands {
                store: store.clone(),
                agent: agent.clone(),
                channel: channel.clone(),
                outbox_wake: wakes.outbox.clone(),
                persona: settings.persona.clone(),
                workspace: config.workspace.clone(),
                tz: config.tz,
                max_tasks_per_chat: config.max_tasks_per_chat,
                stops: stops.clone(),
                unknown_dm: config.unknown_dm,
                pins: crate::config::ModelPins::from_config(&config),
            })
            .with_media(crate::intake::MediaIntake {
                workspace: config.workspace.clone(),
                limits: config.media_max_bytes,
                persona: settings.persona.clone(),
                channel: channel.clone(),
                outbox_wake: wakes.outbox.clone(),
            });
        if config.auto_main {
            intake = intake.with_owner_chat(OwnerChat {
                workspace: config.workspace.clone(),
            });
        }

        let api_routes = crate::api::router(crate::api::ApiState::new(
            store.clone(),
            agent.clone(),
            Arc::new(intake.clone()),
            api.clone(),
            Some(api_approvals),
            crate::api::ApiSettings {
                token: config.http_token.clone(),
                rate_per_minute: config.api_rate_per_minute,
                cors_origins: config.api_cors_origins.clone(),
                reply_timeout: config.api_reply_timeout,
                max_text_bytes: config.max_text_bytes,
                workspace: config.workspace.clone(),
            },
            cancel.clone(),
            main_channel.link(),
        ));
        // Health first: it answers while everything else comes up.
        let app = http::router(
            http::AppState::new(http::AppParts {
                store: store.clone(),
                agent: agent.clone(),
                channel: main_channel.clone(),
                queue: queue.clone(),
                inbound: Arc::new(intake.clone()),
                tasks_wake: wakes.tasks.clone(),
                max_text_bytes: config.max_text_bytes,
                fake,
                whatsapp: whatsapp.clone(),
                token: config.http_token.clone(),
                opencode_url: client.base().to_string(),
            }),
            Some(api_routes),
            config.http_hosts.clone(),
        );
        // The chats parked before the stop are known before /health can be
        // asked about them. (Work to resume is queued at the end, once the
        // tool-call processor runs: a tool request left from before the
        // stop is carried out before the run it belongs to is reconciled.)
        crate::run::recover::restore_parked(&store, &queue).await?;
        tracker.spawn({
            let cancel = cancel.clone();
            async move {
                if let Err(e) = http::serve(listener, app, cancel).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }
        });
        if let Err(e) = std::fs::write(config.data_dir.join(HTTP_ADDR_FILE), addr.to_string()) {
            tracing::warn!(error = %e, "cannot write the http-addr file (status will not find the bridge)");
        }
        tracker.spawn(wait_for_opencode(opencode, cancel.clone()));
        if let Some(server) = managed {
            tracker.spawn(supervise_managed(server, cancel.clone()));
        }

        let mut runner = Runner::new(
            settings.clone(),
            store.clone(),
            agent.clone(),
            channel.clone(),
            queue.clone(),
            wakes.outbox.clone(),
        )
        .with_stops(stops)
        .with_tasks_wake(wakes.tasks.clone());
        match config.transcribe() {
            Some(t) => {
                let t = crate::transcribe::HttpTranscriber::new(t);
                tracing::info!(url = t.url(), model = %config.transcribe_model, "voice notes are transcribed");
                runner = runner.with_transcriber(Arc::new(t));
            }
            None => tracing::info!(
                "no transcription endpoint (PB_TRANSCRIBE_URL): voice notes reach the agent as files"
            ),
        }
        tracker.spawn(
            queue
                .clone()
                .run(Arc::new(runner), cancel.clone(), tracker.clone()),
        );
        if let Some(events) = channel.take_events() {
            tracker.spawn(sender::apply_events(store.clone(), events, cancel.clone()));
        }
        // One sender per channel: WhatsApp does not wait for the API, nor
        // the reverse.
        tracker.spawn(sender::run(
            store.clone(),
            main_channel,
            |chat| !chat.is_api(),
            wakes.main_sender.clone(),
            config.workspace.clone(),
            config.media_max_bytes,
            cancel.clone(),
        ));
        tracker.spawn(sender::run(
            store.clone(),
            Arc::new(api),
            crate::ids::ChatJid::is_api,
            wakes.api_sender.clone(),
            config.workspace.clone(),
            config.media_max_bytes,
            cancel.clone(),
        ));

        let ipc = ipc::Ipc::new(
            ipc_dirs,
            ipc::IpcDeps {
                store: store.clone(),
                agent,
                channel,
                persona: settings.persona,
                tz: settings.tz,
                workspace: settings.workspace,
                media_limits: config.media_max_bytes,
                max_tasks_per_chat: config.max_tasks_per_chat,
                outbox_wake: wakes.outbox.clone(),
                tasks_wake: wakes.tasks.clone(),
            },
        );
        ipc.scan().await;
        tracker.spawn(ipc.run(cancel.clone()));

        let dispatch_queue = queue.clone();
        let scheduler = scheduler::Scheduler::new(
            store.clone(),
            wakes.tasks.clone(),
            Arc::new(scheduler::SystemClock),
            Arc::new(move |chat: &crate::ids::ChatJid| dispatch_queue.notify(chat, Wake::TaskDue)),
        );
        tracker.spawn(scheduler.run(cancel.clone()));

        if let Some(wa) = whatsapp {
            tracker.spawn(wa.supervise(Arc::new(intake), cancel.clone()));
        }

        let resumed = crate::run::recover::resume_pending(&store, &queue).await?;
        tracing::info!(http = %addr, opencode = %client.base(), channel = ?config.channel, resumed, "pocketbrain is running");
        if config.channel == ChannelKind::Fake {
            tracing::warn!(
                "PB_CHANNEL=fake: no WhatsApp; send messages with POST http://{addr}/fake/inbox and read replies at GET /fake/outbox"
            );
        }

        shutdown.await;
        tracing::info!("shutting down");
        cancel.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(15), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 15 s");
        }
        let _ = std::fs::remove_file(config.data_dir.join(HTTP_ADDR_FILE));
        Ok(())
    }
}

/// Who wakes whom, made once: the parts are handed these, never make
/// their own.
#[derive(Clone)]
struct Wakes {
    /// Rows were added to the outbox (a run's answer, a tool, an approval).
    outbox: Arc<Notify>,
    /// Tasks changed (a tool, the CLI through `/tasks/changed`): the
    /// scheduler looks again.
    tasks: Arc<Notify>,
    /// Each sender's own share of `outbox` (one per channel: WhatsApp does
    /// not wait for the API, nor the reverse).
    main_sender: Arc<Notify>,
    api_sender: Arc<Notify>,
}

impl Wakes {
    fn new() -> Self {
        Self {
            outbox: Arc::new(Notify::new()),
            tasks: Arc::new(Notify::new()),
            main_sender: Arc::new(Notify::new()),
            api_sender: Arc::new(Notify::new()),
        }
    }

    /// Passes each wake of `outbox` on to every sender's own (a wake is a
    /// stored permit: one waiter takes it, so each sender needs its own).
    async fn fan_out(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.outbox.notified() => {
                    self.main_sender.notify_one();
                    self.api_sender.notify_one();
                }
            }
        }
    }
}

/// Checks OpenCode's health until it answers (backing off up to 5 s
/// between tries), so health turns `opencode-ok` without waiting for a run.
/// Logs once when it starts waiting and once when OpenCode answers.
async fn wait_for_opencode(opencode: Arc<OpenCode>, cancel: CancellationToken) {
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let mut told = false;
    let check = (|| opencode.check_health()).retry(backoff).notify(|e, _| {
        if !told {
            told = true;
            tracing::warn!(code = "opencode-unreachable", error = %e, "waiting for OpenCode; messages are kept and answered once it is up");
        }
    });
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = check => {
            if let Ok(version) = r {
                tracing::info!(%version, "OpenCode is healthy");
            }
        }
    }
}

/// Holds the managed OpenCode: stops it on shutdown, and starts it again
/// (same port, backing off up to a minute) when it exits by itself; health
/// reports it unreachable meanwhile.
async fn supervise_managed(mut server: ManagedServer, cancel: CancellationToken) {
    let fresh = || {
        backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(60))
                .without_max_times(),
        )
    };
    let mut backoff = fresh();
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = cancel.cancelled() => {
                server.stop(Duration::from_secs(5)).await;
                return;
            }
            status = server.exited() => {
                tracing::error!(code = "opencode-unreachable", status = ?status, "the managed opencode serve exited; starting it again");
            }
        }
        // It ran for a while: a new crash starts the backoff over.
        if started.elapsed() > Duration::from_secs(300) {
            backoff = fresh();
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if let Err(e) = server.respawn() {
            tracing::error!(error = %e, "cannot start opencode serve again; the bridge keeps running without it");
            return;
        }
    }
}
