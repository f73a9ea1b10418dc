//! Which models each profile's chats may choose.

use super::Config;

/// The models each profile's chats may choose (`PB_MODELS_MEMBER`,
/// `PB_MODELS_GUEST`; the main chat may choose any).
#[derive(Debug, Clone, Default)]
pub struct ModelPins {
    pub member: Vec<String>,
    pub guest: Vec<String>,
}

impl ModelPins {
    pub fn from_config(config: &Config) -> Self {
        Self {
            member: config.models_member.clone(),
            guest: config.models_guest.clone(),
        }
    }

    /// Whether a chat of `profile` may use `model` (`provider/model`).
    pub fn allows(&self, profile: crate::model::Profile, model: &str) -> bool {
        let list = match profile {
            crate::model::Profile::Main => return true,
            crate::model::Profile::Member => &self.member,
            crate::model::Profile::Guest => &self.guest,
        };
        list.is_empty()
            || list.iter().any(|p| {
                p == "*"
                    || p == model
                    || p.strip_suffix("/*")
                        .is_some_and(|prov| model.split_once('/').is_some_and(|(mp, _)| mp == prov))
            })
    }

    /// The setting that pins `profile`'s models.
    pub fn setting(profile: crate::model::Profile) -> &'static str {
        match profile {
            crate::model::Profile::Guest => "PB_MODELS_GUEST",
            _ => "PB_MODELS_MEMBER",
        }
    }
}
