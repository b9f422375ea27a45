//! The chat template: LLaMA2-Accessory `accessory/data/conversation/lib.py`, `conv_v1_2`
//! (= `default_conversation`, = `conv_templates["v1"]` used by the SPHINX demos), separator style
//! SINGLE.
//!
//! `process()` builds `system + "\n\n" + sep`, then `" " + role + ": " + message + "\n" + sep` for every
//! message, and `" " + role + ":"` for the final open (None) assistant turn.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `conv_v1_2().system`.
pub const SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the human's questions.";

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One chat message, as a web page would send it: `{"role": "user", "content": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: Role::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: Role::Assistant, content: content.into() }
    }
}

/// A SINGLE-separator-style template (`Conversation` with `sep_style=SINGLE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub system: String,
    /// (user role name, assistant role name).
    pub roles: (String, String),
    pub sep: String,
}

impl Default for Template {
    fn default() -> Self {
        Self::v1_2()
    }
}

impl Template {
    /// `conv_v1_2()`: roles Human/Assistant, sep "###".
    pub fn v1_2() -> Self {
        Template { system: SYSTEM.to_string(), roles: ("Human".into(), "Assistant".into()), sep: "###".into() }
    }

    /// `Conversation.response_end_signal` for SINGLE style: "\n" + sep = "\n###".
    pub fn response_end_signal(&self) -> String {
        format!("\n{}", self.sep)
    }

    /// The prompt for a chat whose last message is the user's open question: the text ends with
    /// `" Assistant:"` (no trailing space). Messages must start with the user and alternate.
    pub fn prompt(&self, messages: &[Message]) -> Result<String> {
        validate(messages)?;
        let mut ret = format!("{}\n\n{}", self.system, self.sep);
        for m in messages {
            let role = match m.role {
                Role::User => &self.roles.0,
                Role::Assistant => &self.roles.1,
            };
            ret.push_str(&format!(" {role}: {}\n{}", m.content, self.sep));
        }
        ret.push_str(&format!(" {}:", self.roles.1));
        Ok(ret)
    }

    /// The prompt for one question: `<system>\n\n### Human: <q>\n### Assistant:`.
    pub fn single_turn(&self, question: &str) -> String {
        format!("{}\n\n{} {}: {question}\n{} {}:", self.system, self.sep, self.roles.0, self.sep, self.roles.1)
    }
}

/// Checks the shape of a chat: non-empty, starts with the user, alternates, ends with the user.
pub fn validate(messages: &[Message]) -> Result<()> {
    let Some(last) = messages.last() else {
        return Err(Error::Msg("conversation: no messages (the last message must be the user's question)".into()));
    };
    for (i, m) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 { Role::User } else { Role::Assistant };
        if m.role != expected {
            let why = if i == 0 {
                "the first message must be from the user".to_string()
            } else {
                "roles must alternate user/assistant".to_string()
            };
            return Err(Error::Msg(format!(
                "conversation: message {i} is from the {:?}, expected {:?}: {why}",
                m.role, expected
            )));
        }
    }
    if last.role != Role::User {
        return Err(Error::Msg(format!(
            "conversation: the last message (#{}) is from the assistant; it must be the user's question",
            messages.len() - 1
        )));
    }
    Ok(())
}

/// [`Template::prompt`] with the default template (`conv_v1_2`).
pub fn prompt(messages: &[Message]) -> Result<String> {
    Template::v1_2().prompt(messages)
}

/// [`Template::single_turn`] with the default template.
pub fn single_turn(question: &str) -> String {
    Template::v1_2().single_turn(question)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenizer::tests::llama2;

    const WIDE_TALL_IDS: [u32; 49] = [
        1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116, 21082, 20255, 29889, 450, 20255, 4076, 8444, 29892,
        13173, 29892, 322, 1248, 568, 6089, 304, 278, 5199, 29915, 29879, 5155, 29889, 13, 13, 2277, 29937, 12968,
        29901, 1724, 338, 297, 278, 1967, 29973, 13, 2277, 29937, 4007, 22137, 29901,
    ];
    const TEXT_IDS: [u32; 51] = [
        1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116, 21082, 20255, 29889, 450, 20255, 4076, 8444, 29892,
        13173, 29892, 322, 1248, 568, 6089, 304, 278, 5199, 29915, 29879, 5155, 29889, 13, 13, 2277, 29937, 12968,
        29901, 14350, 263, 447, 18282, 1048, 278, 7205, 29889, 13, 2277, 29937, 4007, 22137, 29901,
    ];

    #[test]
    fn single_question_tokenizes_to_golden_ids() -> Result<()> {
        let tok = llama2();
        let p = prompt(&[Message::user("What is in the image?")])?;
        assert_eq!(p, format!("{SYSTEM}\n\n### Human: What is in the image?\n### Assistant:"));
        assert_eq!(p, single_turn("What is in the image?"));
        assert_eq!(tok.encode_prompt(&p)?, WIDE_TALL_IDS);
        let p = prompt(&[Message::user("Write a haiku about the sea.")])?;
        assert_eq!(tok.encode_prompt(&p)?, TEXT_IDS);
        Ok(())
    }

    #[test]
    fn golden_reference_prompts_match() -> Result<()> {
        // The prompt strings of shared/golden/sphinx-tiny-1k-dev/reference.json.
        let v = crate::text::tokenizer::tests::reference();
        for (case, q) in [
            ("wide", "What is in the image?"),
            ("tall", "What is in the image?"),
            ("text", "Write a haiku about the sea."),
        ] {
            assert_eq!(v["cases"][case]["prompt"].as_str(), Some(single_turn(q).as_str()), "{case}");
        }
        Ok(())
    }

    #[test]
    fn multi_turn_prompt() -> Result<()> {
        let msgs = [Message::user("Q1"), Message::assistant("A1"), Message::user("Q2")];
        assert_eq!(
            prompt(&msgs)?,
            format!("{SYSTEM}\n\n### Human: Q1\n### Assistant: A1\n### Human: Q2\n### Assistant:")
        );
        assert_eq!(Template::v1_2().response_end_signal(), "\n###");
        // Web-page JSON.
        let m: Vec<Message> = serde_json::from_str(r#"[{"role":"user","content":"hi"}]"#).expect("json");
        assert_eq!(m, [Message::user("hi")]);
        Ok(())
    }

    #[test]
    fn malformed_chats_are_refused() {
        let err = |m: &[Message]| prompt(m).expect_err("must fail").to_string();
        assert!(err(&[]).contains("no messages"));
        assert!(err(&[Message::assistant("a")]).contains("first message must be from the user"));
        assert!(err(&[Message::user("a"), Message::user("b")]).contains("alternate"));
        assert!(err(&[Message::user("a"), Message::assistant("b")]).contains("last message"));
    }
}
