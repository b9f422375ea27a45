//! The text side of SPHINX: tokenizer (LLaMA2-Accessory `model/tokenizer.py`), chat template
//! (`data/conversation/lib.py`), stop handling (`model/meta.py` generate / stream_generate), task
//! prompts and answer parsing (`demos/multi_turn_mm_box.py`), and the sentencepiece `tokenizer.model`
//! converter that lets released checkpoints be used as shipped.

pub mod conversation;
mod proto;
pub mod sentencepiece;
pub mod stop;
pub mod tasks;
pub mod tokenizer;

pub use conversation::{Message, Role, Template};
pub use stop::{StopCriteria, StopReason, StopStream, StreamStep};
pub use tasks::{Drawing, Grounding, PaddedSquare, Region, Shape, Task, TASK_IDS};
pub use tokenizer::{DecodeStream, Tokenizer};
