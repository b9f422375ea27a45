//! When to stop generating, and what text to show while streaming. Mirrors LLaMA2-Accessory
//! `accessory/model/meta.py`: `MetaModel.generate` stops when the generated ids end with EOS, with
//! `encode_segment(response_end_signal)` or with `encode_wo_prefix(response_end_signal)`, and returns
//! the text decoded from the ids before that sequence; `stream_generate` stops when the decoded text
//! contains the signal and cuts the text there.
//!
//! For "\n###" and LLaMA-2 the sequences are [2], [29871, 13, 2277, 29937] and [13, 2277, 29937]; they
//! are derived from the tokenizer here, not written down.

use super::tokenizer::{DecodeStream, Tokenizer};
use crate::error::{Error, Result};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The end-of-sequence id.
    Eos,
    /// The ids of the response-end signal ("\n###").
    StopSequence,
    /// The decoded text contains the signal although its ids differed (stream_generate's rule), or
    /// one of the caller's stop texts (OpenAI's `stop`).
    StopText,
}

/// The most stop texts a caller may add (OpenAI's bound), and the longest one in bytes.
pub const MAX_STOP_TEXTS: usize = 4;
pub const MAX_STOP_TEXT_BYTES: usize = 256;

/// The id sequences (and the text) that end an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCriteria {
    eos_id: u32,
    /// Stop id sequences, EOS first, then the segment form, then the prefix-free form.
    sequences: Vec<Vec<u32>>,
    symbol: String,
    /// The caller's stop texts: where one appears in the decoded text, the answer ends before it.
    texts: Vec<String>,
}

impl StopCriteria {
    /// EOS plus `symbol` tokenized as a segment (`encode(symbol)`, which starts with the dummy-prefix
    /// "▁") and without prefix (`encode("@" + symbol)` minus the ids of `encode("@")`).
    pub fn new(tok: &Tokenizer, symbol: &str) -> Result<Self> {
        if symbol.is_empty() {
            return Err(Error::Msg("stop symbol is empty".into()));
        }
        let segment = tok.encode(symbol)?;
        let at = tok.encode("@")?;
        let with_at = tok.encode(&format!("@{symbol}"))?;
        let bare = with_at.strip_prefix(at.as_slice()).ok_or_else(|| {
            Error::Msg(format!(
                "{}: encode(\"@\" + {symbol:?}) = {with_at:?} does not start with encode(\"@\") = {at:?}",
                tok.source()
            ))
        })?;
        let mut sequences = vec![vec![tok.eos_id()]];
        for s in [segment, bare.to_vec()] {
            if !s.is_empty() && !sequences.contains(&s) {
                sequences.push(s);
            }
        }
        Ok(StopCriteria { eos_id: tok.eos_id(), sequences, symbol: symbol.to_string(), texts: vec![] })
    }

    /// Upstream's: EOS and "\n###" (`Conversation.response_end_signal` of `conv_v1_2`).
    pub fn upstream(tok: &Tokenizer) -> Result<Self> {
        Self::new(tok, &super::conversation::Template::v1_2().response_end_signal())
    }

    /// Adds the caller's stop texts (OpenAI's `stop`: at most [`MAX_STOP_TEXTS`], each non-empty
    /// and at most [`MAX_STOP_TEXT_BYTES`]): the answer ends before the first of them to appear in
    /// the decoded text, which is held back while it may still become one.
    pub fn with_texts(mut self, texts: &[String]) -> Result<Self> {
        if texts.len() > MAX_STOP_TEXTS || texts.iter().any(|t| t.is_empty() || t.len() > MAX_STOP_TEXT_BYTES) {
            return Err(Error::Config(format!(
                "stop must be a non-empty string or up to {MAX_STOP_TEXTS} of them, each at most {MAX_STOP_TEXT_BYTES} bytes"
            )));
        }
        self.texts.extend(texts.iter().cloned());
        Ok(self)
    }

    /// Every text that ends an answer: the signal, then the caller's.
    fn all_texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.symbol.as_str()).chain(self.texts.iter().map(String::as_str))
    }

    /// The stop id sequences (EOS first).
    pub fn sequences(&self) -> &[Vec<u32>] {
        &self.sequences
    }

    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// If `generated` (answer ids only, no prompt) ends with a stop sequence: why, and how many ids to
    /// cut off the end.
    pub fn check(&self, generated: &[u32]) -> Option<(StopReason, usize)> {
        self.sequences.iter().find(|s| generated.ends_with(s)).map(|s| {
            let why = if s.as_slice() == [self.eos_id] { StopReason::Eos } else { StopReason::StopSequence };
            (why, s.len())
        })
    }

    /// The answer ids: `generated` without a trailing stop sequence.
    pub fn answer_ids<'a>(&self, generated: &'a [u32]) -> &'a [u32] {
        match self.check(generated) {
            Some((_, n)) => &generated[..generated.len() - n],
            None => generated,
        }
    }

    /// Length of the longest suffix of `ids` that is a proper prefix of some stop sequence: ids that
    /// may still become part of a stop sequence.
    fn pending_ids(&self, ids: &[u32]) -> usize {
        self.sequences.iter().flat_map(|s| (1..s.len()).filter(move |&k| ids.ends_with(&s[..k]))).max().unwrap_or(0)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `symbol` (at a char boundary).
fn pending_text(text: &str, symbol: &str) -> usize {
    (1..symbol.len()).rev().find(|&k| symbol.is_char_boundary(k) && text.ends_with(&symbol[..k])).unwrap_or(0)
}

/// What one generated id produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct StreamStep {
    /// Text that is final and safe to show.
    pub text: String,
    /// Set when generation must end now; `text` then completes the answer.
    pub stop: Option<StopReason>,
}

/// Streaming with stop handling: feed generated ids, get text that never contains (a piece of) the
/// stop signal. The shown deltas concatenate to the final answer:
/// * stopped by ids: `decode(ids before the stop sequence)`, as `MetaModel.generate` returns;
/// * stopped by text: the decoded text before the signal, as `stream_generate` returns;
/// * ended by the length budget ([`StopStream::finish`]): `decode(all ids)`.
///
/// Two hold-backs make that true: ids that could still grow into a stop sequence are not decoded yet
/// (so the "▁" of [29871, 13, 2277, 29937] never shows as a space), and decoded text ending in a
/// prefix of the signal ("\n", "\n#", "\n##") is not shown yet.
#[derive(Debug, Clone)]
pub struct StopStream {
    criteria: StopCriteria,
    detok: DecodeStream,
    ids: Vec<u32>,
    /// Ids already given to the detokenizer.
    committed: usize,
    /// Decoded text not yet shown (a possible start of the signal).
    held: String,
    /// All text shown so far.
    shown: String,
    stopped: Option<StopReason>,
}

impl StopStream {
    pub fn new(tok: &Tokenizer, criteria: StopCriteria) -> Self {
        StopStream {
            criteria,
            detok: tok.decode_stream(),
            ids: vec![],
            committed: 0,
            held: String::new(),
            shown: String::new(),
            stopped: None,
        }
    }

    /// Decodes ids `committed..upto` into `held`.
    fn commit(&mut self, upto: usize) -> Result<()> {
        while self.committed < upto {
            let d = self.detok.step(self.ids[self.committed])?;
            self.held.push_str(&d);
            self.committed += 1;
        }
        Ok(())
    }

    fn show(&mut self, n: usize) -> String {
        let s: String = self.held.drain(..n).collect();
        self.shown.push_str(&s);
        s
    }

    /// Adds one generated id. After a stop has been reported, further ids are an error.
    pub fn push(&mut self, id: u32) -> Result<StreamStep> {
        if let Some(why) = self.stopped {
            return Err(Error::Msg(format!("generation already stopped ({why:?}); id {id} not accepted")));
        }
        self.ids.push(id);
        if let Some((why, n)) = self.criteria.check(&self.ids) {
            // Everything before the stop sequence is the answer.
            self.commit(self.ids.len() - n)?;
            let tail = self.detok.finish();
            self.held.push_str(&tail);
            self.stopped = Some(why);
            let text = self.show(self.held.len());
            return Ok(StreamStep { text, stop: Some(why) });
        }
        let upto = self.ids.len() - self.criteria.pending_ids(&self.ids);
        self.commit(upto)?;
        if let Some(pos) = self.criteria.all_texts().filter_map(|t| self.held.find(t)).min() {
            self.stopped = Some(StopReason::StopText);
            let text = self.show(pos);
            self.held.clear();
            return Ok(StreamStep { text, stop: Some(StopReason::StopText) });
        }
        let keep = self.criteria.all_texts().map(|t| pending_text(&self.held, t)).max().unwrap_or(0);
        let text = self.show(self.held.len() - keep);
        Ok(StreamStep { text, stop: None })
    }

    /// Ends a generation that ran out of length budget: shows everything held back. Returns "" if a
    /// stop was already reported.
    pub fn finish(&mut self) -> Result<String> {
        if self.stopped.is_some() {
            return Ok(String::new());
        }
        self.commit(self.ids.len())?;
        let tail = self.detok.finish();
        self.held.push_str(&tail);
        Ok(self.show(self.held.len()))
    }

    /// All generated ids so far (stop sequence included).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// All text shown so far; after a stop or `finish`, the whole answer.
    pub fn text(&self) -> &str {
        &self.shown
    }

    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenizer::tests::llama2;

    #[test]
    fn llama2_stop_sequences_are_derived() -> Result<()> {
        let tok = llama2();
        let c = StopCriteria::upstream(&tok)?;
        assert_eq!(c.sequences(), [vec![2], vec![29871, 13, 2277, 29937], vec![13, 2277, 29937]]);
        // reference.json agrees.
        let v = crate::text::tokenizer::tests::reference();
        let s = &v["tokenizer"]["stop_sequences"];
        assert_eq!(s["eos"], serde_json::json!(c.sequences()[0]));
        assert_eq!(s["'\\n###' as segment"], serde_json::json!(c.sequences()[1]));
        assert_eq!(s["'\\n###' without prefix space"], serde_json::json!(c.sequences()[2]));
        Ok(())
    }

    #[test]
    fn check_and_answer_ids() -> Result<()> {
        let c = StopCriteria::upstream(&llama2())?;
        assert_eq!(c.check(&[5, 6, 2]), Some((StopReason::Eos, 1)));
        assert_eq!(c.check(&[5, 29871, 13, 2277, 29937]), Some((StopReason::StopSequence, 4)));
        assert_eq!(c.check(&[5, 13, 2277, 29937]), Some((StopReason::StopSequence, 3)));
        assert_eq!(c.check(&[5, 13, 2277]), None);
        assert_eq!(c.answer_ids(&[5, 29871, 13, 2277, 29937]), [5]);
        assert_eq!(c.answer_ids(&[5, 6]), [5, 6]);
        Ok(())
    }

    /// Runs ids through a StopStream, checking that the signal never shows and that the deltas add up.
    fn stream(tok: &Tokenizer, ids: &[u32]) -> (String, Vec<String>, Option<StopReason>) {
        let mut s = StopStream::new(tok, StopCriteria::upstream(tok).expect("criteria"));
        let mut deltas = vec![];
        for &id in ids {
            let step = s.push(id).expect("push");
            deltas.push(step.text);
            if step.stop.is_some() {
                break;
            }
        }
        deltas.push(s.finish().expect("finish"));
        let all: String = deltas.concat();
        assert_eq!(all, s.text());
        assert!(!all.contains("\n###"), "{all:?}");
        (all, deltas, s.stopped())
    }

    #[test]
    fn stream_stops_on_the_segment_form_without_its_space() -> Result<()> {
        let tok = llama2();
        let mut ids = tok.encode("The sea is calm.")?;
        let answer = tok.decode(&ids)?;
        ids.extend([29871, 13, 2277, 29937, 12968]); // "\n###" as a segment, then " Human"
        let (all, deltas, why) = stream(&tok, &ids);
        assert_eq!(why, Some(StopReason::StopSequence));
        assert_eq!(all, answer);
        assert_eq!(all, tok.decode(StopCriteria::upstream(&tok)?.answer_ids(&ids[..ids.len() - 1]))?);
        // The "▁" (29871) was held back rather than shown as a trailing space.
        assert!(deltas.iter().all(|d| !d.ends_with(' ')), "{deltas:?}");
        Ok(())
    }

    #[test]
    fn stream_stops_on_prefix_free_form_and_eos() -> Result<()> {
        let tok = llama2();
        let mut ids = tok.encode("Line one\nLine two")?;
        let answer = tok.decode(&ids)?;
        ids.extend([13, 2277, 29937]);
        let (all, _, why) = stream(&tok, &ids);
        assert_eq!((all.as_str(), why), (answer.as_str(), Some(StopReason::StopSequence)));

        let mut ids = tok.encode("Done")?;
        ids.push(2);
        let (all, _, why) = stream(&tok, &ids);
        assert_eq!((all.as_str(), why), ("Done", Some(StopReason::Eos)));
        Ok(())
    }

    #[test]
    fn callers_stop_texts_end_the_answer_before_the_first_and_are_held_back() -> Result<()> {
        let tok = llama2();
        let ids = tok.encode("one, two; three. four")?;
        let run = |texts: &[&str]| -> Result<(Vec<String>, Option<StopReason>)> {
            let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
            let mut s = StopStream::new(&tok, StopCriteria::upstream(&tok)?.with_texts(&texts)?);
            let mut deltas = vec![];
            for &id in &ids {
                let step = s.push(id)?;
                deltas.push(step.text);
                if step.stop.is_some() {
                    break;
                }
            }
            deltas.push(s.finish()?);
            assert_eq!(deltas.concat(), s.text());
            Ok((deltas, s.stopped()))
        };
        let (deltas, why) = run(&["three", "; t"])?;
        assert_eq!((deltas.concat().as_str(), why), ("one, two", Some(StopReason::StopText)));
        // ";" was held back while it could still start "; t": no delta ever showed it
        assert!(deltas.iter().all(|d| !d.contains(';')), "{deltas:?}");
        let (deltas, why) = run(&["five"])?;
        assert_eq!((deltas.concat().as_str(), why), ("one, two; three. four", None));
        let c = StopCriteria::upstream(&tok)?;
        assert!(c.clone().with_texts(&[String::new()]).is_err(), "an empty stop");
        assert!(c.clone().with_texts(&vec!["x".to_string(); MAX_STOP_TEXTS + 1]).is_err(), "too many");
        assert!(c.with_texts(&["y".repeat(MAX_STOP_TEXT_BYTES + 1)]).is_err(), "too long");
        Ok(())
    }

    #[test]
    fn stream_stops_on_the_signal_in_text() -> Result<()> {
        let tok = llama2();
        // "\n####" as [13, 2277, 2277]: not an id stop sequence, but the text contains "\n###".
        let mut ids = tok.encode("Answer")?;
        ids.extend([13, 2277, 2277]);
        assert_eq!(tok.decode(&[13, 2277, 2277])?, "\n####");
        let (all, _, why) = stream(&tok, &ids);
        assert_eq!((all.as_str(), why), ("Answer", Some(StopReason::StopText)));
        Ok(())
    }

    #[test]
    fn held_back_text_is_flushed_when_it_is_not_the_signal() -> Result<()> {
        let tok = llama2();
        // "\n" then "##" then text: the newline is held until it is clear no "###" follows.
        let ids = tok.encode("a\n## b\nc")?;
        let (all, deltas, why) = stream(&tok, &ids);
        assert_eq!(why, None);
        assert_eq!(all, "a\n## b\nc");
        assert!(deltas.iter().any(|d| d.contains("\n##")), "{deltas:?}");
        // Budget end with a held newline: finish() shows it.
        let ids = tok.encode("end\n")?;
        let (all, deltas, _) = stream(&tok, &ids);
        assert_eq!(all, "end\n");
        assert_eq!(deltas.last().map(String::as_str), Some("\n"));
        Ok(())
    }

    #[test]
    fn pushing_after_a_stop_is_an_error() -> Result<()> {
        let tok = llama2();
        let mut s = StopStream::new(&tok, StopCriteria::upstream(&tok)?);
        assert_eq!(s.push(2)?.stop, Some(StopReason::Eos));
        assert!(s.push(5).is_err());
        Ok(())
    }
}
