//! Speech to text over an OpenAI-compatible `POST /v1/audio/transcriptions`
//! (`PB_TRANSCRIBE_URL`, `PB_TRANSCRIBE_MODEL`, `PB_TRANSCRIBE_API_KEY`):
//! OpenAI's hosted API, or a local whisper server (whisper.cpp's server,
//! faster-whisper-server / speaches, LocalAI) that speaks the same route.
//!
//! The request is `multipart/form-data` with `file` (the audio as saved),
//! `model` and `response_format=json`; the answer `{"text": "..."}`. A
//! plain-text answer is taken as the transcript too (some servers ignore
//! `response_format`). Every call has a deadline (`PB_TRANSCRIBE_TIMEOUT`):
//! a slow or failing endpoint gives an error, and the message goes to the
//! agent with a note instead of a transcript.

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::media::{TranscribeError, Transcriber};

/// The transcription endpoint's settings; they live with the rest of the
/// configuration, which builds them ([`crate::config::Config::transcribe`]).
pub use crate::config::TranscribeSettings;

/// An OpenAI-compatible transcription client.
pub struct HttpTranscriber {
    http: reqwest::Client,
    url: String,
    settings: TranscribeSettings,
}

impl HttpTranscriber {
    pub fn new(settings: TranscribeSettings) -> Self {
        let base = settings.url.trim_end_matches('/');
        let url = if base.ends_with("/audio/transcriptions") {
            base.to_owned()
        } else {
            format!("{base}/audio/transcriptions")
        };
        Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client builds"),
            url,
            settings,
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The transcript in an answer body: `{"text": ...}`, or plain text.
fn transcript_of(body: &str) -> Result<String, TranscribeError> {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => v
            .get("text")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| TranscribeError("the answer has no \"text\"".into()))?,
        Err(_) => body.to_owned(),
    };
    Ok(text.trim().to_owned())
}

impl Transcriber for HttpTranscriber {
    fn transcribe<'a>(
        &'a self,
        audio: Vec<u8>,
        mime: &'a str,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<String, TranscribeError>> {
        Box::pin(async move {
            // Text fields, then the file; no quote or line break in its name.
            let file = reqwest::multipart::Part::bytes(audio)
                .file_name(filename.replace(['"', '\r', '\n'], "_"))
                .mime_str(mime)
                .map_err(|e| TranscribeError(format!("{mime:?} is not a media type ({e})")))?;
            let form = reqwest::multipart::Form::new()
                .text("model", self.settings.model.clone())
                .text("response_format", "json")
                .part("file", file);
            let mut req = self
                .http
                .post(&self.url)
                .timeout(self.settings.timeout)
                .multipart(form);
            if let Some(key) = &self.settings.api_key {
                req = req.bearer_auth(key.expose());
            }
            let resp = req.send().await.map_err(|e| {
                TranscribeError(if e.is_timeout() {
                    format!("no answer within {} s", self.settings.timeout.as_secs_f32())
                } else {
                    format!("endpoint unreachable ({e})")
                })
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| TranscribeError(format!("answer unreadable ({e})")))?;
            if !status.is_success() {
                let short: String = text.chars().take(200).collect();
                return Err(TranscribeError(format!(
                    "endpoint answered {status}: {short}"
                )));
            }
            transcript_of(&text)
        })
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_is_appended_to_a_base_url() {
        let t = |url: &str| {
            HttpTranscriber::new(TranscribeSettings {
                url: url.into(),
                model: "whisper-1".into(),
                api_key: None,
                timeout: Duration::from_secs(1),
            })
            .url()
            .to_owned()
        };
        assert_eq!(
            t("http://127.0.0.1:8080/v1"),
            "http://127.0.0.1:8080/v1/audio/transcriptions"
        );
        assert_eq!(
            t("https://api.openai.com/v1/audio/transcriptions"),
            "https://api.openai.com/v1/audio/transcriptions"
        );
    }

    #[test]
    fn transcripts_come_from_json_or_plain_text() {
        assert_eq!(transcript_of(r#"{"text":" hello "}"#).unwrap(), "hello");
        assert_eq!(transcript_of("hello there\n").unwrap(), "hello there");
        assert!(transcript_of(r#"{"error":"x"}"#).is_err());
    }
}
