//! The LLaMA-2 tokenizer as upstream uses it: LLaMA2-Accessory `accessory/model/tokenizer.py`
//! (`Tokenizer.encode(s, bos=True, eos=False)` = `[bos] + sp.encode(s)`; `decode` = `sp.decode`).
//!
//! Encoding runs the `tokenizers` crate on a `tokenizer.json`, or on a `tokenizer.model` converted by
//! [`super::sentencepiece`]. Decoding is our own and follows sentencepiece's `Decode` rather than HF's
//! decoder chain, because the two differ where upstream's output is visible:
//! * control ids (`<s>`, `</s>`) print nothing, `<unk>` prints sentencepiece's " ⁇ ";
//! * byte-fallback pieces (`<0xE2>`) are joined and invalid UTF-8 becomes one U+FFFD **per byte**
//!   (HF turns a whole run of byte pieces into U+FFFDs as soon as one byte is bad);
//! * the dummy-prefix space is removed from the first non-control piece only if that piece is a text
//!   piece (a leading byte or `<unk>` piece keeps the space of the piece after it).
//!
//! Doing it on bytes also makes streaming exact: [`DecodeStream`] emits only complete characters and its
//! deltas always concatenate to `decode(all ids)`.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::sentencepiece::{self, ModelProto, SPACE_MARK};
use crate::error::{Error, Result};

/// How one id decodes.
#[derive(Debug, Clone, PartialEq)]
enum PieceText {
    /// Text with "▁" already turned into " ".
    Text(String),
    /// A byte-fallback piece `<0xXX>`.
    Byte(u8),
    /// `<s>`, `</s>` and other control pieces: invisible.
    Control,
    /// `<unk>`: printed as sentencepiece's unk surface.
    Unknown,
}

/// The decode side, shared (cheaply, via `Arc`) with every [`DecodeStream`].
#[derive(Debug)]
struct DecodeTable {
    pieces: Vec<PieceText>,
    /// Drop one leading space of the first text piece (sentencepiece's dummy prefix).
    strip_dummy_prefix: bool,
    unk_surface: String,
}

/// A sentencepiece-style (LLaMA) tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    table: Arc<DecodeTable>,
    /// Where it came from, for error messages.
    source: String,
    bos_id: u32,
    eos_id: u32,
    unk_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish_non_exhaustive()
    }
}

/// `<0xXX>` -> the byte.
fn byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Does a tokenizer.json prepend sentencepiece's dummy "▁" (normalizer `Prepend`, or a `Metaspace`
/// pre-tokenizer that prepends)?
fn json_has_dummy_prefix(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            let ty = m.get("type").and_then(Value::as_str);
            if ty == Some("Prepend") && m.get("prepend").and_then(Value::as_str) == Some(SPACE_MARK) {
                return true;
            }
            if ty == Some("Metaspace") {
                let scheme = m.get("prepend_scheme").and_then(Value::as_str);
                let legacy = m.get("add_prefix_space").and_then(Value::as_bool);
                return matches!(scheme, Some("always") | Some("first")) || (scheme.is_none() && legacy == Some(true));
            }
            m.values().any(json_has_dummy_prefix)
        }
        Value::Array(a) => a.iter().any(json_has_dummy_prefix),
        _ => false,
    }
}

/// Does any component of a tokenizer.json have this `"type"`?
fn json_has_type(v: &Value, ty: &str) -> bool {
    match v {
        Value::Object(m) => {
            m.get("type").and_then(Value::as_str) == Some(ty) || m.values().any(|x| json_has_type(x, ty))
        }
        Value::Array(a) => a.iter().any(|x| json_has_type(x, ty)),
        _ => false,
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` or a sentencepiece `tokenizer.model` (told apart by content).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Loads from the bytes of a `tokenizer.json` or a `tokenizer.model`; `name` (the file name)
    /// prefixes every error.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        // A ModelProto starts with field 1 (0x0A, also ASCII whitespace) and holds binary floats, so
        // it is never UTF-8 text opening with '{'.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') && std::str::from_utf8(bytes).is_ok() {
            Self::from_json_bytes(bytes, name)
        } else {
            Self::from_sentencepiece_bytes(bytes, name)
        }
    }

    /// Loads an HF `tokenizer.json` (a sentencepiece-derived BPE such as LLaMA's).
    pub fn from_json_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let json: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::format(name, format!("not a tokenizer.json: {e}")))?;
        let model_type = json.pointer("/model/type").and_then(Value::as_str).unwrap_or("");
        if model_type != "BPE" {
            return Err(Error::format(
                name,
                format!("tokenizer model type {model_type:?} unsupported: expected a sentencepiece-style BPE (LLaMA)"),
            ));
        }
        if json_has_type(&json, "ByteLevel") {
            return Err(Error::format(
                name,
                "byte-level (GPT-2 style) tokenizers are unsupported: expected sentencepiece-style BPE",
            ));
        }
        let strip = json_has_dummy_prefix(&json);
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::format(name, format!("cannot load tokenizer.json: {e}")))?;
        Self::build(inner, name, strip, " \u{2047} ".to_string())
    }

    /// Loads a sentencepiece `tokenizer.model` by converting it (see [`super::sentencepiece`]).
    pub fn from_sentencepiece_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let proto = ModelProto::from_bytes(bytes, name)?;
        let json = proto.to_tokenizer_json(name)?;
        let text = serde_json::to_string(&json)
            .map_err(|e| Error::format(name, format!("cannot serialise the converted tokenizer: {e}")))?;
        let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes())
            .map_err(|e| Error::format(name, format!("converted tokenizer does not load: {e}")))?;
        let tok =
            Self::build(inner, name, proto.normalizer_spec.add_dummy_prefix, proto.trainer_spec.unk_surface.clone())?;
        // The conversion must keep ids and piece kinds exactly.
        for (i, p) in proto.pieces.iter().enumerate() {
            let expect = match p.kind {
                sentencepiece::PieceType::Control => PieceText::Control,
                sentencepiece::PieceType::Unknown => PieceText::Unknown,
                sentencepiece::PieceType::Byte => match byte_piece(&p.piece) {
                    Some(b) => PieceText::Byte(b),
                    None => return Err(Error::format(name, format!("byte piece {i} is {:?}, not <0xXX>", p.piece))),
                },
                _ => PieceText::Text(p.piece.replace(SPACE_MARK, " ")),
            };
            if tok.table.pieces.get(i) != Some(&expect) {
                return Err(Error::format(name, format!("piece {i} {:?} changed kind in conversion", p.piece)));
            }
        }
        Ok(tok)
    }

    fn build(
        mut inner: tokenizers::Tokenizer,
        name: &str,
        strip_dummy_prefix: bool,
        unk_surface: String,
    ) -> Result<Self> {
        // Sentencepiece never matches control pieces in the input: "<s>" typed by a user is text.
        // HF would turn it into id 1; upstream (sentencepiece) does not, nor do we.
        inner.set_encode_special_tokens(true);
        let n = inner.get_vocab_size(true);
        let unk_token = match inner.get_model() {
            tokenizers::models::ModelWrapper::BPE(bpe) => bpe.unk_token.clone(),
            _ => None,
        };
        let added = inner.get_added_vocabulary();
        let mut pieces = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let tok = inner.id_to_token(id).ok_or_else(|| {
                Error::format(name, format!("vocabulary has no token for id {id} (ids must be dense)"))
            })?;
            let p = if Some(&tok) == unk_token.as_ref() {
                PieceText::Unknown
            } else if added.is_special_token(&tok) {
                PieceText::Control
            } else if let Some(b) = byte_piece(&tok) {
                PieceText::Byte(b)
            } else {
                PieceText::Text(tok.replace(SPACE_MARK, " "))
            };
            pieces.push(p);
        }
        let lookup =
            |t: &str| inner.token_to_id(t).ok_or_else(|| Error::format(name, format!("tokenizer has no {t} token")));
        let bos_id = lookup("<s>")?;
        let eos_id = lookup("</s>")?;
        let unk_id = unk_token.as_deref().and_then(|t| inner.token_to_id(t));
        Ok(Tokenizer {
            table: Arc::new(DecodeTable { pieces, strip_dummy_prefix, unk_surface }),
            inner,
            source: name.to_string(),
            bos_id,
            eos_id,
            unk_id,
        })
    }

    /// `sp.encode(text)`: no BOS, no EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Msg(format!("{}: cannot encode {text:?}: {e}", self.source)))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Upstream `Tokenizer.encode(prompt, bos=True, eos=False)`: `[BOS] + encode(text)`.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.bos_id];
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// `sp.decode(ids)` (see the module doc); an id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut s = self.decode_stream();
        let mut out = String::new();
        for &id in ids {
            out.push_str(&s.step(id)?);
        }
        out.push_str(&s.finish());
        Ok(out)
    }

    /// An incremental detokenizer for streaming.
    pub fn decode_stream(&self) -> DecodeStream {
        DecodeStream { table: Arc::clone(&self.table), pending: vec![], at_start: true }
    }

    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Number of ids (32000 for LLaMA-2).
    pub fn vocab_size(&self) -> usize {
        self.table.pieces.len()
    }

    /// The piece of an id as in the vocabulary ("▁the", "<0x0A>", "<s>").
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Feeds ids one by one and returns text deltas that never split a UTF-8 character; the deltas plus
/// [`DecodeStream::finish`] concatenate to exactly `Tokenizer::decode(all ids)`.
///
/// It owns its decode table (an `Arc`), so it can live beside the tokenizer in a wasm-side struct.
#[derive(Debug, Clone)]
pub struct DecodeStream {
    table: Arc<DecodeTable>,
    /// Bytes that may still be the start of a character.
    pending: Vec<u8>,
    /// No non-control piece seen yet (the dummy-prefix space is still to be removed).
    at_start: bool,
}

/// Appends `bytes` to `out` as sentencepiece does: valid characters as they are, one U+FFFD per byte
/// that does not start a valid character. With `keep_incomplete`, a trailing sequence that is a valid
/// but unfinished character is left out and returned as the number of bytes kept back.
fn push_lossy(out: &mut String, mut bytes: &[u8], keep_incomplete: bool) -> usize {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return 0;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid` is UTF-8 by construction.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                if e.error_len().is_none() && keep_incomplete {
                    return rest.len();
                }
                out.push('\u{FFFD}');
                bytes = &rest[1..];
            }
        }
    }
}

impl DecodeStream {
    /// Adds one id; returns the text that became final.
    pub fn step(&mut self, id: u32) -> Result<String> {
        let piece = self.table.pieces.get(id as usize).ok_or_else(|| {
            Error::Msg(format!("cannot decode id {id}: vocabulary has {} ids", self.table.pieces.len()))
        })?;
        match piece {
            PieceText::Control => return Ok(String::new()),
            PieceText::Byte(b) => self.pending.push(*b),
            PieceText::Unknown => self.pending.extend_from_slice(self.table.unk_surface.as_bytes()),
            PieceText::Text(t) => {
                let t =
                    if self.at_start && self.table.strip_dummy_prefix { t.strip_prefix(' ').unwrap_or(t) } else { t };
                self.pending.extend_from_slice(t.as_bytes());
            }
        }
        self.at_start = false;
        let mut out = String::new();
        let kept = push_lossy(&mut out, &self.pending, true);
        self.pending.drain(..self.pending.len() - kept);
        Ok(out)
    }

    /// Ends the stream: bytes of an unfinished character become U+FFFDs, as in `decode`.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        push_lossy(&mut out, &self.pending, false);
        self.pending.clear();
        out
    }

    /// Are bytes of an unfinished character held back?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;

    use crate::testing::{fixtures_dir, golden_dir};

    /// The golden LLaMA-2 tokenizer.json (shared by the text tests).
    pub fn llama2() -> Tokenizer {
        Tokenizer::from_file(golden_dir("tokenizer-llama2").join("tokenizer.json")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// shared/golden/sphinx-tiny-1k-dev/reference.json.
    pub fn reference() -> Value {
        let path = golden_dir("sphinx-tiny-1k-dev").join("reference.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[derive(Deserialize)]
    struct Case {
        prompt: String,
        prompt_ids: Vec<u32>,
        greedy_ids: Vec<u32>,
        greedy_text: String,
    }

    fn golden_cases() -> Vec<(String, Case)> {
        let v = reference();
        let cases = v["cases"].as_object().expect("cases");
        cases.iter().map(|(k, c)| (k.clone(), serde_json::from_value(c.clone()).expect("case"))).collect()
    }

    #[test]
    fn llama2_ids_and_sizes() {
        let t = llama2();
        assert_eq!((t.bos_id(), t.eos_id(), t.unk_id()), (1, 2, Some(0)));
        assert_eq!(t.vocab_size(), 32000);
        assert_eq!(t.id_to_piece(13).as_deref(), Some("<0x0A>"));
        assert_eq!(t.encode("\n###").expect("enc"), vec![29871, 13, 2277, 29937]);
    }

    #[test]
    fn golden_prompts_and_greedy_text() {
        let t = llama2();
        for (name, c) in golden_cases() {
            assert_eq!(t.encode_prompt(&c.prompt).expect("enc"), c.prompt_ids, "case {name}");
            assert_eq!(t.decode(&c.greedy_ids).expect("dec"), c.greedy_text, "case {name}");
            // The prompt decodes back to itself (BOS is invisible).
            assert_eq!(t.decode(&c.prompt_ids).expect("dec"), c.prompt, "case {name}");
        }
    }

    #[test]
    fn user_typed_special_tokens_stay_text() {
        let t = llama2();
        let ids = t.encode("<s>hi</s>").expect("enc");
        assert!(!ids.contains(&1) && !ids.contains(&2), "{ids:?}");
        assert_eq!(t.decode(&ids).expect("dec"), "<s>hi</s>");
    }

    #[test]
    fn decode_follows_sentencepiece() {
        let t = llama2();
        let b = |x: u8| 3 + x as u32; // <0xXX> = 3 + XX in LLaMA
        let hello = t.encode("hello").expect("enc");
        assert_eq!(t.decode(&[b(0xE2), b(0x80), b(0x94)]).expect("d"), "—");
        assert_eq!(t.decode(&[b(0xE2), b(0x80)]).expect("d"), "\u{FFFD}\u{FFFD}");
        assert_eq!(t.decode(&[b(0xE2), b(0x80), b(0x94), b(0x80)]).expect("d"), "—\u{FFFD}");
        let mut ids = vec![1];
        ids.extend(&hello);
        ids.push(2);
        assert_eq!(t.decode(&ids).expect("d"), "hello");
        let mut ids = vec![0];
        ids.extend(&hello);
        assert_eq!(t.decode(&ids).expect("d"), " \u{2047}  hello");
        let e = t.decode(&[32000]).expect_err("out of range").to_string();
        assert!(e.contains("32000"), "{e}");
    }

    /// Streaming deltas never contain a broken character and always add up to `decode`.
    #[test]
    fn decode_stream_matches_decode() {
        let t = llama2();
        let texts =
            ["Hello, world! 你好，世界 😀🎉 — naïve café", "  leading spaces\n\nand\ttabs", "🇫🇷👨‍👩‍👧‍👦 emoji sequences", ""];
        let b = |x: u8| 3 + x as u32;
        let mut id_lists: Vec<Vec<u32>> = texts.iter().map(|s| t.encode_prompt(s).expect("enc")).collect();
        id_lists.push(vec![b(0xF0), b(0x9F), b(0x98), b(0x80), 2]);
        id_lists.push(vec![b(0xE2), b(0x80), 450, b(0x80), b(0xE2)]);
        id_lists.push(vec![0, b(0x0A), 29871, 450]);
        for ids in &id_lists {
            let mut s = t.decode_stream();
            let mut all = String::new();
            for &id in ids {
                let d = s.step(id).expect("step");
                all.push_str(&d);
            }
            all.push_str(&s.finish());
            assert_eq!(all, t.decode(ids).expect("dec"), "{ids:?}");
        }
        // The emoji only appears once its fourth byte arrived.
        let mut s = t.decode_stream();
        let deltas: Vec<String> = [b(0xF0), b(0x9F), b(0x98), b(0x80)].iter().map(|&i| s.step(i).expect("s")).collect();
        assert_eq!(deltas, ["", "", "", "😀"]);
    }

    #[test]
    fn load_errors_name_the_file() {
        let e = Tokenizer::from_file("/nonexistent/tokenizer.json").expect_err("missing").to_string();
        assert!(e.starts_with("/nonexistent/tokenizer.json"), "{e}");
        let e = Tokenizer::from_bytes(b"{ not json", "bad/tokenizer.json").expect_err("bad").to_string();
        assert!(e.starts_with("bad/tokenizer.json: "), "{e}");
        let e = Tokenizer::from_bytes(b"\x0a\x03abc", "bad/tokenizer.model").expect_err("bad").to_string();
        assert!(e.starts_with("bad/tokenizer.model: "), "{e}");
    }

    #[test]
    fn tiny_model_loads_from_file() {
        let t = Tokenizer::from_file(fixtures_dir().join("spm_tiny_bpe.model")).expect("tiny");
        assert_eq!(t.vocab_size(), 500);
        assert_eq!(t.decode(&t.encode_prompt("the the").expect("e")).expect("d"), "the the");
    }
}
