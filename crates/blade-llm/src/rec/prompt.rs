//! The prompt: a user's history as item titles, in a template, in the model's chat template.

use serde::{Deserialize, Serialize};

use crate::tokenizer::ChatTemplate;

/// The prompt template. `{history}` becomes the history titles, one per line (oldest first);
/// `{k}` the list length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTemplate {
    /// Optional system message.
    pub system: Option<String>,
    /// The user message.
    pub user: String,
    /// Wrap in the model's chat template (instruct models); otherwise the text is used as is.
    pub chat: bool,
}

impl Default for PromptTemplate {
    fn default() -> Self {
        Self {
            system: None,
            user: "A user watched these movies, most recent last:\n{history}\n\nRecommend {k} \
                   other movies this user will like. Answer with the titles only, one per line."
                .into(),
            chat: true,
        }
    }
}

impl PromptTemplate {
    /// The prompt text for `history` (titles, oldest first) asking for `k` items, wrapped in
    /// `chat` when the template asks for it.
    pub fn render(&self, chat: &ChatTemplate, history: &[&str], k: usize) -> String {
        let user = self
            .user
            .replace("{history}", &history.join("\n"))
            .replace("{k}", &k.to_string());
        if self.chat {
            chat.render(self.system.as_deref(), &user)
        } else {
            match &self.system {
                Some(s) => format!("{s}\n\n{user}\n"),
                None => format!("{user}\n"),
            }
        }
    }
}
