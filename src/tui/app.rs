//! The terminal app's state: one struct, changed only by [`App::update`]
//! with an [`Event`] (a key, or what the network task saw), which returns
//! what the network task should do. No terminal and no socket here, so
//! every rule is tested as plain data.

use std::collections::{BTreeSet, HashMap, VecDeque};

use ratatui::crossterm::event::KeyEvent;
use serde_json::{Value, json};

/// A conversation the app can show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// An API conversation (`api:<name>`), by name: readable and writable.
    Api(String),
    /// A registered WhatsApp chat, by JID: readable (the owner only).
    Chat(String),
}

impl Target {
    pub fn label(&self) -> &str {
        match self {
            Target::Api(n) | Target::Chat(n) => n,
        }
    }
}

/// The link to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Online,
    /// Lost or refused; the network task keeps trying.
    Offline(String),
}

/// Who wrote a line of the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    You,
    Assistant,
    /// Delivered without being streamed: a tool's message, a task result.
    Delivered,
    /// A tool call of the agent, as it goes.
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub role: Role,
    pub text: String,
}

/// A conversation's transcript and the reply streaming into it.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    pub streaming: String,
    /// Tool-call parts and their entry, updated as the call goes.
    pub(super) tools: HashMap<String, usize>,
    /// How many entries there were when its history was asked for: what
    /// came after is kept when the (older) history arrives.
    pub(super) asked_at: Option<usize>,
}

/// A pending approval, as the bridge sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub code: String,
    pub chat: String,
    pub permission: String,
    /// The whole request (a command as typed), else OpenCode's patterns.
    pub detail: Vec<String>,
}

/// One row of the conversations pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub target: Target,
    pub name: String,
    pub last_activity_ms: Option<i64>,
    /// A WhatsApp chat's: its messages from others after the owner's read
    /// mark, as the bridge counts them (so they survive the app's
    /// restarts); an API conversation's: the messages that came while
    /// another was shown.
    pub unread: usize,
    /// The seq of the chat's newest stored message, as the bridge says.
    pub last_seq: i64,
    /// Its own model (`/model`), as `GET /api/v1/chats` says; `None`: the
    /// default, or not known (an API key cannot list chats).
    pub model: Option<String>,
    /// The model its turns use while it has none of its own
    /// (`PB_OPENCODE_MODEL`, else OpenCode's default), as the bridge says.
    pub default_model: Option<String>,
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Input,
    Conversations,
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size (the next draw fits it).
    Resized,
    /// The socket is open (the network task connected or reconnected).
    Online,
    Offline(String),
    /// A frame from the WebSocket.
    Frame(Value),
    /// `GET /api/v1/conversations`: the API conversations' names.
    Conversations(Vec<String>),
    /// `GET /status` (the owner's): the links, running turns, the queue.
    Status(Value),
    /// `GET /api/v1/chats` (the owner's): every registered chat.
    Chats(Vec<Value>),
    /// A conversation's stored history, oldest first, as the API lists
    /// it (`direction`, `text`).
    History(Target, Vec<Value>),
    /// A REST call failed.
    Failed(String),
    /// The answer to `POST /api/v1/whatsapp/link`: the link's state, or
    /// why it was refused.
    Linked(Result<Value, String>),
}

/// What the network task is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A frame for the WebSocket.
    Send(Value),
    /// Fetch the conversation list (and status).
    Refresh,
    History(Target),
    /// Move the owner's read mark of the conversation to this seq.
    Read(Target, i64),
    /// Ask for a new WhatsApp link, by this phone number (`None`: QR code).
    Link(Option<String>),
    Quit,
}

/// The whole app.
#[derive(Debug, Clone)]
pub struct App {
    pub link: Link,
    pub selected: Target,
    pub rows: Vec<Row>,
    /// The conversations pane's highlighted row.
    pub cursor: usize,
    pub transcripts: HashMap<Target, Transcript>,
    /// API conversations this socket subscribes to (again, on reconnect).
    pub subscribed: BTreeSet<String>,
    pub input: String,
    pub focus: Focus,
    pub approvals: VecDeque<Approval>,
    /// Lines scrolled up in the approval pop-up.
    pub approval_scroll: u16,
    pub help: bool,
    /// Lines scrolled back from the end of the reply pane.
    pub scroll_back: u16,
    /// The last notice (an error, an answer passed on).
    pub notice: Option<String>,
    /// From `/status`: the WhatsApp link (`code`), running turns, queue.
    pub whatsapp: Option<String>,
    /// While WhatsApp pairs by QR code: the code's text (from the socket's
    /// `link` frames, the newest as WhatsApp rotates it).
    pub qr: Option<String>,
    /// While WhatsApp pairs by phone number: the code to enter on the
    /// phone (from the `link` frames, or the answer to asking for it).
    pub pair_code: Option<String>,
    /// The link pop-up is open (`F2`).
    pub show_qr: bool,
    /// The phone number being typed in the link pop-up (after `p`).
    pub phone: Option<String>,
    /// What became of the last request for a link: asked, or the error.
    pub link_note: Option<String>,
    pub runs_active: u64,
    pub queued: usize,
    /// The read marks this app has sent, per conversation.
    pub marks: HashMap<Target, i64>,
    pub(super) quit: bool,
}

impl App {
    /// A fresh app on `conversation` (an API conversation's name; empty:
    /// the API key's own, named by the bridge when subscribed).
    pub fn new(conversation: &str) -> Self {
        let selected = Target::Api(conversation.to_owned());
        App {
            link: Link::Connecting,
            rows: vec![Row {
                target: selected.clone(),
                name: conversation.to_owned(),
                last_activity_ms: None,
                unread: 0,
                last_seq: 0,
                model: None,
                default_model: None,
            }],
            selected,
            cursor: 0,
            transcripts: HashMap::new(),
            subscribed: BTreeSet::from([conversation.to_owned()]),
            input: String::new(),
            focus: Focus::Input,
            approvals: VecDeque::new(),
            approval_scroll: 0,
            help: false,
            scroll_back: 0,
            notice: None,
            whatsapp: None,
            qr: None,
            pair_code: None,
            show_qr: false,
            phone: None,
            link_note: None,
            runs_active: 0,
            queued: 0,
            marks: HashMap::new(),
            quit: false,
        }
    }

    pub fn quitting(&self) -> bool {
        self.quit
    }

    pub fn transcript(&self, t: &Target) -> Option<&Transcript> {
        self.transcripts.get(t)
    }

    /// Whether typed lines can go to the selected conversation.
    pub fn writable(&self) -> bool {
        matches!(self.selected, Target::Api(_))
    }

    /// Applies one event; what the network task should do.
    pub fn update(&mut self, ev: Event) -> Vec<Action> {
        match ev {
            Event::Key(k) => self.on_key(k),
            Event::Resized => vec![],
            Event::Online => {
                self.link = Link::Online;
                self.notice = None;
                let mut out: Vec<Action> = self
                    .subscribed
                    .iter()
                    .map(|c| {
                        // Empty: the key's own conversation.
                        let c = (!c.is_empty()).then_some(c);
                        Action::Send(json!({"type": "subscribe", "conversation": c}))
                    })
                    .collect();
                out.push(Action::Refresh);
                if !self.selected.label().is_empty() {
                    out.push(self.history(self.selected.clone()));
                }
                out
            }
            Event::Offline(why) => {
                self.link = Link::Offline(why);
                vec![]
            }
            Event::Frame(v) => self.on_frame(&v),
            Event::Conversations(names) => {
                for n in names {
                    self.ensure_row(Target::Api(n.clone()), &n, None);
                }
                vec![]
            }
            Event::Status(v) => {
                self.on_status(&v);
                vec![]
            }
            Event::Chats(list) => self.on_chats(&list),
            Event::History(target, messages) => self.on_history(target, &messages),
            Event::Failed(why) => {
                self.notice = Some(why);
                vec![]
            }
            Event::Linked(answer) => {
                self.on_linked(answer);
                vec![]
            }
        }
    }

    pub(super) fn ensure_row(&mut self, target: Target, name: &str, last: Option<i64>) -> &mut Row {
        let i = match self.rows.iter().position(|r| r.target == target) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    target,
                    name: name.to_owned(),
                    last_activity_ms: None,
                    unread: 0,
                    last_seq: 0,
                    model: None,
                    default_model: None,
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        if last.is_some() {
            row.last_activity_ms = last;
        }
        row
    }

    /// The conversation not named yet (the key's own) gets the name the
    /// bridge subscribed it under.
    fn adopt(&mut self, name: &str) -> Vec<Action> {
        let unnamed = Target::Api(String::new());
        if self.selected != unnamed || name.is_empty() {
            return vec![];
        }
        let named = Target::Api(name.to_owned());
        self.selected = named.clone();
        self.subscribed.remove("");
        self.subscribed.insert(name.to_owned());
        self.rows.retain(|r| r.target != named);
        for r in self.rows.iter_mut().filter(|r| r.target == unnamed) {
            r.target = named.clone();
            r.name = name.to_owned();
        }
        if let Some(tr) = self.transcripts.remove(&unnamed) {
            self.transcripts.insert(named.clone(), tr);
        }
        vec![self.history(named)]
    }

    fn on_frame(&mut self, v: &Value) -> Vec<Action> {
        let conv = v["conversation"].as_str().unwrap_or("").to_owned();
        let target = Target::Api(conv.clone());
        match v["type"].as_str().unwrap_or("") {
            "delta" => {
                let t = v["text"].as_str().unwrap_or("");
                self.transcripts
                    .entry(target)
                    .or_default()
                    .streaming
                    .push_str(t);
            }
            "message" => {
                let text = v["text"].as_str().unwrap_or("").to_owned();
                let tr = self.transcripts.entry(target.clone()).or_default();
                let streamed = !std::mem::take(&mut tr.streaming).is_empty();
                tr.entries.push(Entry {
                    role: if streamed {
                        Role::Assistant
                    } else {
                        Role::Delivered
                    },
                    text,
                });
                let selected = self.selected == target;
                let row = self.ensure_row(target, &conv, None);
                if !selected {
                    row.unread += 1;
                }
            }
            "approval" => {
                let code = v["code"].as_str().unwrap_or("").to_owned();
                if code.is_empty() || self.approvals.iter().any(|a| a.code == code) {
                    return vec![];
                }
                self.approvals.push_back(Approval {
                    code,
                    chat: v["chat"].as_str().unwrap_or("?").to_owned(),
                    permission: v["permission"].as_str().unwrap_or("?").to_owned(),
                    detail: match v["detail"].as_str() {
                        Some(d) => vec![d.to_owned()],
                        None => v["patterns"]
                            .as_array()
                            .map(|p| {
                                p.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    },
                });
            }
            "tool" => {
                let tr = self.transcripts.entry(target).or_default();
                let text = format!(
                    "⚙ {} {}",
                    v["tool"].as_str().unwrap_or("?"),
                    v["status"].as_str().unwrap_or("?")
                );
                let part = v["part"].as_str().unwrap_or("").to_owned();
                match tr.tools.get(&part) {
                    Some(&i) if i < tr.entries.len() => tr.entries[i].text = text,
                    _ => {
                        tr.tools.insert(part, tr.entries.len());
                        tr.entries.push(Entry {
                            role: Role::Tool,
                            text,
                        });
                    }
                }
            }
            "subscribed" => return self.adopt(&conv),
            "link" => {
                self.whatsapp = v["code"].as_str().map(str::to_owned);
                self.qr = v["qr"].as_str().map(str::to_owned);
                self.pair_code = v["pair_code"].as_str().map(str::to_owned);
                if v["up"] == true {
                    self.link_note = None;
                }
            }
            "answered" => self.notice = Some("answer passed on".into()),
            "error" => self.notice = Some(v["error"].as_str().unwrap_or("?").to_owned()),
            _ => {}
        }
        vec![]
    }

    fn on_status(&mut self, v: &Value) {
        let live = &v["live"];
        self.whatsapp = live["link"]["code"].as_str().map(str::to_owned);
        self.runs_active = live["runs_active"].as_u64().unwrap_or(0);
        self.queued = live["queue"].as_array().map_or(0, Vec::len);
    }
}
