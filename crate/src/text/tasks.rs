//! Task prompts and the parsing of grounded answers (boxes, points) for drawing. Mirrors the SPHINX
//! demo LLaMA2-Accessory `accessory/demos/multi_turn_mm_box.py` (the prompt list in its page header,
//! `extract_and_color`, `draw_box_mask_on_image`) and the REC box parsing of `eval_mm`.
//!
//! Coordinates in answers are fractions of the **padded square** (side max(w, h)) the image was pasted
//! into (see `image` preprocessing), x1,y1,x2,y2 for boxes and x,y for points; several shapes in one
//! bracket are separated by ";". Pixel = v * max(w, h) - pad offset.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The demo's general question. (The golden data uses "What is in the image?"; both are plain questions.)
pub const GENERAL_QA: &str = "What's in the image?";
pub const DETAILED_DESCRIPTION: &str = "Generate a detailed description about the image.";
pub const CAPTION: &str = "Provide a one-sentence caption for the provided image.";
pub const GROUNDED_CAPTION: &str = "Describe the image concisely. Include the bounding box for each mentioned object.";
pub const TEXT_SPOTTING: &str = "Please detect all texts and provide their bounding box coordinate.";
pub const CHART_TO_TABLE: &str = "Convert this chart to a table.";
/// eval_mm's suffix for short-answer VQA benchmarks.
pub const SHORT_ANSWER_SUFFIX: &str = "\nAnswer the question using a single word or phrase.";

/// Referring expression comprehension (also the demo's "relationship grounding", e.g. "people on car").
/// A trailing "." of the phrase is not doubled.
pub fn rec(phrase: &str) -> String {
    let phrase = phrase.trim().trim_end_matches('.');
    format!("Please provide the bounding box coordinate of the region this sentence describes: {phrase}.")
}

/// Object detection of one class ("people", "cars").
pub fn detect(class: &str) -> String {
    format!("Detect all {} shown in the image.", class.trim())
}

/// Human key points inside a region given in padded-square fractions.
pub fn keypoints(region: [f64; 4]) -> String {
    format!("Detect the key points of the person in the region {}.", format_box(region))
}

/// A short-answer VQA question (eval_mm style).
pub fn short_answer(question: &str) -> String {
    format!("{question}{SHORT_ANSWER_SUFFIX}")
}

/// `[x1, y1, x2, y2]` with two decimals, as the answers write boxes. [inferred: the precision of the
/// training data; the demo only shows "[x1, y1, x2, y2]"]
pub fn format_box(b: [f64; 4]) -> String {
    format!("[{:.2}, {:.2}, {:.2}, {:.2}]", b[0], b[1], b[2], b[3])
}

/// What a task needs besides the image, as a page asks for it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldSpec {
    /// The [`Task`] field it fills.
    pub name: &'static str,
    /// `text` or `region` (drawn over the image).
    pub kind: &'static str,
    pub label: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<&'static str>,
}

/// A task as a page lists it: its id ([`Task`]'s serde tag), its name, its fields, and what its
/// answer brings to draw (`boxes`, `points`, `table`, or none: text only).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaskSpec {
    pub id: &'static str,
    pub label: &'static str,
    pub fields: &'static [FieldSpec],
    pub shows: Option<&'static str>,
}

const fn text_field(name: &'static str, label: &'static str, placeholder: &'static str) -> FieldSpec {
    FieldSpec { name, kind: "text", label, placeholder: Some(placeholder) }
}

const fn task(id: &'static str, label: &'static str, fields: &'static [FieldSpec], shows: Option<&'static str>) -> TaskSpec {
    TaskSpec { id, label, fields, shows }
}

/// The tasks SPHINX was tuned on, in the order a page lists them (the package's `TASKS`, written
/// from this table when the package is built).
pub const TASKS: [TaskSpec; 10] = [
    task("general_qa", "What is in it?", &[], None),
    task("detailed_description", "Detailed description", &[], None),
    task("caption", "Caption", &[], None),
    task("rec", "Find a region", &[text_field("phrase", "What to find", "the man in the blue shirt")], Some("boxes")),
    task("grounded_caption", "Grounded caption", &[], Some("boxes")),
    task("detect", "Detect objects", &[text_field("class", "Objects to detect", "dogs")], Some("boxes")),
    task("keypoints", "Human key points", &[FieldSpec { name: "region", kind: "region", label: "Region of the person", placeholder: None }], Some("points")),
    task("text_spotting", "Text spotting", &[], Some("boxes")),
    task("chart_to_table", "Chart to table", &[], Some("table")),
    task("short_answer", "Short answer", &[text_field("question", "Question", "What colour is the bus?")], None),
];

/// The ids of [`TASKS`], in order.
pub const TASK_IDS: [&str; TASKS.len()] = {
    let mut ids = [""; TASKS.len()];
    let mut i = 0;
    while i < TASKS.len() {
        ids[i] = TASKS[i].id;
        i += 1;
    }
    ids
};

/// A task as a web page would request it, e.g. `{"task": "detect", "class": "dogs"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    GeneralQa,
    DetailedDescription,
    Caption,
    Rec { phrase: String },
    GroundedCaption,
    Detect { class: String },
    Keypoints { region: Region },
    TextSpotting,
    ChartToTable,
    ShortAnswer { question: String },
}

/// A task's text field, trimmed; an empty one is an error naming the task and the field.
fn field<'a>(task: &str, name: &str, value: &'a str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::Msg(format!("task {task}: the field `{name}` is empty")));
    }
    Ok(v)
}

impl Task {
    /// The user message for this task. `frame` (the image's padded square) is needed when a region
    /// is given in image pixels.
    pub fn prompt(&self, frame: Option<&PaddedSquare>) -> Result<String> {
        Ok(match self {
            Task::GeneralQa => GENERAL_QA.into(),
            Task::DetailedDescription => DETAILED_DESCRIPTION.into(),
            Task::Caption => CAPTION.into(),
            Task::Rec { phrase } => rec(field("rec", "phrase", phrase)?),
            Task::GroundedCaption => GROUNDED_CAPTION.into(),
            Task::Detect { class } => detect(field("detect", "class", class)?),
            Task::Keypoints { region } => keypoints(region.fractions(frame)?),
            Task::TextSpotting => TEXT_SPOTTING.into(),
            Task::ChartToTable => CHART_TO_TABLE.into(),
            Task::ShortAnswer { question } => short_answer(field("short_answer", "question", question)?),
        })
    }
}

/// A region of the image: padded-square fractions `[x1, y1, x2, y2]` (as the model reads them) or
/// image pixels `{"x1", "y1", "x2", "y2"}` (as a page draws them; needs the image's size).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Region {
    Fractions([f64; 4]),
    Pixels { x1: f64, y1: f64, x2: f64, y2: f64 },
}

impl Region {
    /// The region in padded-square fractions, corners ordered (a drag may go right to left); pixel
    /// regions are clamped to the image first. Fails for non-finite numbers, fractions outside
    /// [0, 1], a region without area, or pixels without a `frame`.
    pub fn fractions(&self, frame: Option<&PaddedSquare>) -> Result<[f64; 4]> {
        let bad = |why: &str| Error::Msg(format!("region {}: {why}", self.describe()));
        let [x1, y1, x2, y2] = match *self {
            Region::Fractions(b) => b,
            Region::Pixels { x1, y1, x2, y2 } => [x1, y1, x2, y2],
        };
        if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) {
            return Err(bad("the coordinates must be finite numbers"));
        }
        let (x1, x2, y1, y2) = (x1.min(x2), x1.max(x2), y1.min(y2), y1.max(y2));
        let out = match self {
            Region::Fractions(_) => {
                if x1 < 0.0 || y1 < 0.0 || x2 > 1.0 || y2 > 1.0 {
                    return Err(bad("fractions of the padded square must lie in [0, 1]"));
                }
                [x1, y1, x2, y2]
            }
            Region::Pixels { .. } => {
                let f = frame.ok_or_else(|| bad("a region in pixels needs the image's size"))?;
                let (w, h) = (f64::from(f.width), f64::from(f.height));
                let (a, b) = f.to_fraction(x1.clamp(0.0, w), y1.clamp(0.0, h));
                let (c, d) = f.to_fraction(x2.clamp(0.0, w), y2.clamp(0.0, h));
                [a, b, c, d]
            }
        };
        if out[2] <= out[0] || out[3] <= out[1] {
            return Err(bad("it has no area inside the image"));
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        match *self {
            Region::Fractions(b) => format!("{b:?}"),
            Region::Pixels { x1, y1, x2, y2 } => format!("({x1}, {y1})-({x2}, {y2}) px"),
        }
    }
}

/// A region as the bracket the model reads (`[x1, y1, x2, y2]` in padded-square fractions), to put
/// into any question ("What is in [0.10, 0.20, 0.50, 0.60]?").
pub fn region_text(region: &Region, frame: Option<&PaddedSquare>) -> Result<String> {
    Ok(format_box(region.fractions(frame)?))
}

/// The padded square of an image of `width` x `height` pixels: maps answer fractions to pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaddedSquare {
    pub width: u32,
    pub height: u32,
}

impl PaddedSquare {
    pub fn new(width: u32, height: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Msg(format!("image size {width}x{height}: both sides must be positive")));
        }
        Ok(PaddedSquare { width, height })
    }

    /// max(w, h).
    pub fn side(&self) -> f64 {
        f64::from(self.width.max(self.height))
    }

    /// Where the image sits in the square, as the demo computes it: `((h-w)//2, 0)` for tall images,
    /// `(0, (w-h)//2)` otherwise.
    pub fn origin(&self) -> (f64, f64) {
        if self.width < self.height {
            (f64::from((self.height - self.width) / 2), 0.0)
        } else {
            (0.0, f64::from((self.width - self.height) / 2))
        }
    }

    /// Square fractions -> image pixels.
    pub fn to_pixels(&self, x: f64, y: f64) -> (f64, f64) {
        let (ox, oy) = self.origin();
        (x * self.side() - ox, y * self.side() - oy)
    }

    /// Image pixels -> square fractions (for region prompts drawn on the image).
    pub fn to_fraction(&self, px: f64, py: f64) -> (f64, f64) {
        let (ox, oy) = self.origin();
        ((px + ox) / self.side(), (py + oy) / self.side())
    }
}

/// One shape of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    Point { x: f64, y: f64 },
    Box { x1: f64, y1: f64, x2: f64, y2: f64 },
}

impl Shape {
    /// The same shape in image pixels (from square fractions).
    pub fn to_pixels(&self, frame: &PaddedSquare) -> Shape {
        match *self {
            Shape::Point { x, y } => {
                let (x, y) = frame.to_pixels(x, y);
                Shape::Point { x, y }
            }
            Shape::Box { x1, y1, x2, y2 } => {
                let (x1, y1) = frame.to_pixels(x1, y1);
                let (x2, y2) = frame.to_pixels(x2, y2);
                Shape::Box { x1, y1, x2, y2 }
            }
        }
    }
}

/// A bracket of an answer with the phrase it belongs to (`<p>phrase</p> [..]`), if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grounding {
    pub phrase: Option<String>,
    /// Points (2 numbers) and boxes (4 numbers); parts with another count are dropped, as the demo
    /// draws nothing for them.
    pub shapes: Vec<Shape>,
    /// Byte range of `<p>...</p>` in the answer.
    pub phrase_range: Option<(usize, usize)>,
    /// Byte range of `[...]` in the answer.
    pub bracket_range: (usize, usize),
}

impl Grounding {
    /// The same grounding with shapes in image pixels.
    pub fn to_pixels(&self, frame: &PaddedSquare) -> Grounding {
        Grounding { shapes: self.shapes.iter().map(|s| s.to_pixels(frame)).collect(), ..self.clone() }
    }
}

/// `\d`: ASCII digits. (Python's `regex` also takes other Unicode decimal digits, which `float()`
/// would then parse; answers never contain them.)
fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// The bracket class `[\d.,;\s]`.
fn in_bracket_class(c: char) -> bool {
    is_digit(c) || matches!(c, '.' | ',' | ';') || c.is_whitespace()
}

/// End of the run of `pred` chars starting at byte `i`.
fn skip_while(s: &str, i: usize, pred: impl Fn(char) -> bool) -> usize {
    s[i..].char_indices().find(|&(_, c)| !pred(c)).map_or(s.len(), |(k, _)| i + k)
}

/// `\[[\d.,;\s]*\]` at byte `i` (which holds '['): the end of the match.
fn bracket_at(s: &str, i: usize) -> Option<usize> {
    let k = skip_while(s, i + 1, in_bracket_class);
    s[k..].starts_with(']').then_some(k + 1)
}

/// `re.findall(r'\d+\.\d+', part)` as floats.
fn decimals(part: &str) -> Vec<f64> {
    let b = part.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let j = skip_while(part, i, is_digit);
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            let k = skip_while(part, j + 1, is_digit);
            if let Ok(v) = part[i..k].parse() {
                out.push(v);
            }
            i = k;
        } else {
            i = j.max(i + 1);
        }
    }
    out
}

/// The shapes of one bracket `[...]`: split on ";", numbers with a decimal point only.
fn shapes(bracket: &str) -> Vec<Shape> {
    bracket
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(';')
        .filter_map(|part| match decimals(part)[..] {
            [x, y] => Some(Shape::Point { x, y }),
            [x1, y1, x2, y2] => Some(Shape::Box { x1, y1, x2, y2 }),
            _ => None,
        })
        .collect()
}

/// First pass of `extract_and_color`: `<p>(.*?)</p>\s*(\[[\d.,;\s]*\])` with `re.finditer`
/// (leftmost, non-overlapping; the lazy phrase may run over an earlier `</p>` but not over a newline).
/// Returns (match start, phrase start, phrase end, bracket start, bracket end).
fn phrase_matches(s: &str) -> Vec<(usize, usize, usize, usize, usize)> {
    let mut out = vec![];
    let mut i = 0;
    while let Some(off) = s[i..].find("<p>") {
        let start = i + off;
        let text = start + 3;
        let mut found = None;
        let mut j = text;
        while let Some(o) = s[j..].find("</p>") {
            let close = j + o;
            if s[text..close].contains('\n') {
                break;
            }
            let b0 = skip_while(s, close + 4, char::is_whitespace);
            if s[b0..].starts_with('[') {
                if let Some(b1) = bracket_at(s, b0) {
                    found = Some((start, text, close, b0, b1));
                    break;
                }
            }
            j = close + 1;
        }
        match found {
            Some(m) => {
                out.push(m);
                i = m.4;
            }
            None => i = start + 1,
        }
    }
    out
}

/// Parses an answer like the demo's `extract_and_color`: first every `<p>phrase</p> [...]`, then every
/// other bracket (not preceded by the demo's "|||" marker). Shapes are in square fractions. The order is
/// the demo's (each pass right to left), which matters only for key points named twice (the last
/// one drawn wins); sort by `bracket_range` for reading order.
pub fn parse_answer(answer: &str) -> Vec<Grounding> {
    let phrases = phrase_matches(answer);
    let mut out: Vec<Grounding> = phrases
        .iter()
        .rev()
        .map(|&(start, text, close, b0, b1)| Grounding {
            phrase: Some(answer[text..close].to_string()),
            shapes: shapes(&answer[b0..b1]),
            phrase_range: Some((start, close + 4)),
            bracket_range: (b0, b1),
        })
        .collect();
    // Second pass: `(?<!\|\|\|)(\[[\d.,;\s]*\])` over the text in which the first pass put "|||" before
    // each bracket it took; on the original text that is "skip those brackets and any after '|||'".
    let mut rest = vec![];
    let mut i = 0;
    while let Some(off) = answer[i..].find('[') {
        let p = i + off;
        let taken = phrases.iter().any(|m| m.3 == p) || answer[..p].ends_with("|||");
        match (taken, bracket_at(answer, p)) {
            (false, Some(end)) => {
                rest.push(Grounding {
                    phrase: None,
                    shapes: shapes(&answer[p..end]),
                    phrase_range: None,
                    bracket_range: (p, end),
                });
                i = end;
            }
            _ => i = p + 1,
        }
    }
    out.extend(rest.into_iter().rev());
    out
}

/// COCO-17 key point names, in COCO order (the demo's `key_point_names`).
pub const COCO_KEYPOINTS: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// The 19 COCO skeleton edges, 1-based indices into [`COCO_KEYPOINTS`] (the demo's `skeleton`).
pub const COCO_SKELETON: [[usize; 2]; 19] = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
];

/// Skeleton lines between named key points, as the demo draws them: every point is remembered under
/// its phrase with spaces turned into "_" (a later one with the same name wins), and each COCO edge
/// whose two ends are remembered becomes a line `[[x, y], [x, y]]` in the groundings' coordinates.
pub fn skeleton_lines(groundings: &[Grounding]) -> Vec<[[f64; 2]; 2]> {
    let mut seen: std::collections::HashMap<String, [f64; 2]> = Default::default();
    for g in groundings {
        for s in &g.shapes {
            if let Shape::Point { x, y } = *s {
                seen.insert(g.phrase.as_deref().unwrap_or("").replace(' ', "_"), [x, y]);
            }
        }
    }
    COCO_SKELETON
        .iter()
        .filter_map(|&[a, b]| {
            let pa = seen.get(COCO_KEYPOINTS[a - 1])?;
            let pb = seen.get(COCO_KEYPOINTS[b - 1])?;
            Some([*pa, *pb])
        })
        .collect()
}

/// Everything a page needs to show an answer over the original image, in image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drawing {
    pub groundings: Vec<Grounding>,
    pub skeleton: Vec<[[f64; 2]; 2]>,
    /// The rows of cells when the answer is a table (a chart→table answer), see [`parse_table`].
    pub table: Option<Vec<Vec<String>>>,
}

/// [`parse_answer`] mapped into the pixels of a `width` x `height` image, with the skeleton lines
/// and the table, if the answer is one.
pub fn drawing(answer: &str, width: u32, height: u32) -> Result<Drawing> {
    let frame = PaddedSquare::new(width, height)?;
    let groundings: Vec<Grounding> = parse_answer(answer).iter().map(|g| g.to_pixels(&frame)).collect();
    let skeleton = skeleton_lines(&groundings);
    Ok(Drawing { groundings, skeleton, table: parse_table(answer) })
}

/// Cells of one table line: `a | b | c`, with or without the outer pipes of Markdown.
fn table_cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|c| c.trim().to_string()).collect()
}

/// Markdown's header rule: every cell `---`, `:--`, `--:` or `:-:`.
fn is_rule(cells: &[String]) -> bool {
    cells.iter().all(|c| {
        let c = c.trim_matches(':');
        c.len() >= 2 && c.chars().all(|ch| ch == '-')
    })
}

/// A chart→table answer as rows of cells, or `None` when the answer holds no table. A table is two
/// or more consecutive lines with a `|` between cells; rows are separated by newlines, by DePlot's
/// literal `<0x0A>`, or by `&&&`; Markdown's outer pipes and header rule are dropped; text before and
/// after the table is ignored. Rows keep their own cell counts (a page pads short ones). [inferred:
/// the upstream code has no table parser; these are the layouts of the public chart→table data]
pub fn parse_table(answer: &str) -> Option<Vec<Vec<String>>> {
    let text = answer.replace("<0x0A>", "\n").replace("&&&", "\n");
    let mut best: Vec<Vec<String>> = vec![];
    let mut run: Vec<Vec<String>> = vec![];
    for line in text.lines().chain(std::iter::once("")) {
        if line.contains('|') {
            let cells = table_cells(line);
            if !is_rule(&cells) {
                run.push(cells);
            }
            continue;
        }
        if run.len() > best.len() {
            best = std::mem::take(&mut run);
        }
        run.clear();
    }
    (best.len() >= 2).then_some(best)
}

/// REC evaluation's box (eval_mm): the first `\[(.*?)\]` (or, without a bracket, the text before the
/// first "]"), split on ","; four numbers or `None` (eval_mm then scores a zero box).
pub fn parse_rec_box(answer: &str) -> Option<[f64; 4]> {
    let mut inner = None;
    let mut i = 0;
    while let Some(off) = answer[i..].find('[') {
        let p = i + off;
        let line_end = answer[p..].find('\n').map_or(answer.len(), |k| p + k);
        if let Some(k) = answer[p + 1..line_end].find(']') {
            inner = Some(&answer[p + 1..p + 1 + k]);
            break;
        }
        i = p + 1;
    }
    let inner = inner.unwrap_or_else(|| answer.split(']').next().unwrap_or(""));
    let v: Vec<f64> = inner.split(',').map(|x| x.trim().parse::<f64>()).collect::<std::result::Result<_, _>>().ok()?;
    match v[..] {
        [a, b, c, d] => Some([a, b, c, d]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts() {
        assert_eq!(
            rec("the man in the blue shirt."),
            "Please provide the bounding box coordinate of the region this sentence describes: the man in the blue shirt."
        );
        assert_eq!(detect("people"), "Detect all people shown in the image.");
        assert_eq!(
            keypoints([0.1, 0.2, 0.5, 0.9]),
            "Detect the key points of the person in the region [0.10, 0.20, 0.50, 0.90]."
        );
        assert_eq!(short_answer("What color?"), "What color?\nAnswer the question using a single word or phrase.");
        let t: Task = serde_json::from_str(r#"{"task":"detect","class":"dogs"}"#).expect("json");
        assert_eq!(t.prompt(None).expect("prompt"), "Detect all dogs shown in the image.");
        let t: Task = serde_json::from_str(r#"{"task":"keypoints","region":[0,0,1,1]}"#).expect("json");
        assert_eq!(t.prompt(None).expect("prompt"), "Detect the key points of the person in the region [0.00, 0.00, 1.00, 1.00].");
        assert_eq!(Task::ChartToTable.prompt(None).expect("prompt"), CHART_TO_TABLE);
        assert_eq!(Task::GroundedCaption.prompt(None).expect("prompt"), GROUNDED_CAPTION);
    }

    #[test]
    fn every_task_id_is_a_task() {
        for id in TASK_IDS {
            let json = serde_json::json!({"task": id, "phrase": "a cat", "class": "cats", "question": "Why?", "region": [0.1, 0.1, 0.2, 0.2]});
            let t: Task = serde_json::from_value(json).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(serde_json::to_value(&t).expect("json")["task"], id);
            assert!(!t.prompt(None).expect("prompt").is_empty());
        }
    }

    /// A page asks exactly for what each task takes: its listed fields make it, and without any
    /// one of them it is refused.
    #[test]
    fn every_listed_task_is_made_from_exactly_its_fields() {
        let value = |f: &FieldSpec| if f.kind == "region" { serde_json::json!([0.1, 0.1, 0.2, 0.2]) } else { serde_json::json!("cats") };
        for spec in TASKS {
            let mut json = serde_json::json!({"task": spec.id});
            spec.fields.iter().for_each(|f| json[f.name] = value(f));
            let t: Task = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{}: {e}", spec.id));
            assert!(!t.prompt(None).expect("prompt").is_empty());
            for f in spec.fields {
                let mut less = json.clone();
                less.as_object_mut().expect("object").remove(f.name);
                assert!(serde_json::from_value::<Task>(less).is_err(), "{} without {}", spec.id, f.name);
            }
            assert!(matches!(spec.shows, None | Some("boxes" | "points" | "table")), "{}", spec.id);
        }
    }

    #[test]
    fn empty_fields_and_bad_regions_are_errors() {
        let err = |t: Task, frame: Option<&PaddedSquare>| t.prompt(frame).expect_err("an error").to_string();
        assert!(err(Task::Detect { class: "  ".into() }, None).contains("`class` is empty"));
        assert!(err(Task::Rec { phrase: String::new() }, None).contains("`phrase`"));
        let px = Region::Pixels { x1: 10.0, y1: 10.0, x2: 20.0, y2: 20.0 };
        assert!(err(Task::Keypoints { region: px }, None).contains("needs the image's size"));
        let frame = PaddedSquare::new(100, 50).expect("frame");
        let nan = Region::Pixels { x1: f64::NAN, y1: 0.0, x2: 1.0, y2: 1.0 };
        assert!(err(Task::Keypoints { region: nan }, Some(&frame)).contains("finite"));
        let flat = Region::Pixels { x1: 5.0, y1: 60.0, x2: 50.0, y2: 90.0 }; // below the 50-px image
        assert!(err(Task::Keypoints { region: flat }, Some(&frame)).contains("no area"));
        assert!(err(Task::Keypoints { region: Region::Fractions([0.0, 0.0, 1.5, 1.0]) }, None).contains("[0, 1]"));
    }

    #[test]
    fn pixel_regions_become_padded_square_fractions() -> Result<()> {
        // Wide 400x200: side 400, the image sits 100 px down. A drag from (300, 150) to (100, 50)
        // (right to left) is the box (100, 50)-(300, 150), i.e. y + 100 in the square.
        let frame = PaddedSquare::new(400, 200)?;
        let r = Region::Pixels { x1: 300.0, y1: 150.0, x2: 100.0, y2: 50.0 };
        assert_eq!(r.fractions(Some(&frame))?, [0.25, 0.375, 0.75, 0.625]);
        let t = Task::Keypoints { region: r };
        assert_eq!(t.prompt(Some(&frame))?, "Detect the key points of the person in the region [0.25, 0.38, 0.75, 0.62].");
        // Tall 200x400: x + 100. Pixels outside the image are clamped to it.
        let frame = PaddedSquare::new(200, 400)?;
        let r = Region::Pixels { x1: -20.0, y1: 0.0, x2: 100.0, y2: 400.0 };
        assert_eq!(region_text(&r, Some(&frame))?, "[0.25, 0.00, 0.50, 1.00]");
        let t: Task = serde_json::from_str(r#"{"task":"keypoints","region":{"x1":0,"y1":0,"x2":200,"y2":400}}"#).expect("json");
        assert_eq!(t.prompt(Some(&frame))?, "Detect the key points of the person in the region [0.25, 0.00, 0.75, 1.00].");
        Ok(())
    }

    #[test]
    fn tables() {
        let md = "Here is the table:\n| Year | Sales |\n|---|:--:|\n| 2020 | 1.5 |\n| 2021 | 2 |\nDone.";
        let t = parse_table(md).expect("markdown table");
        assert_eq!(t, [["Year", "Sales"], ["2020", "1.5"], ["2021", "2"]]);
        let deplot = "TITLE | Sales <0x0A> Year | Sales <0x0A> 2020 | 1.5 <0x0A> 2021 | 2.0";
        let t = parse_table(deplot).expect("deplot table");
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], ["TITLE", "Sales"]);
        assert_eq!(t[3], ["2021", "2.0"]);
        assert_eq!(parse_table("a | b &&& 1 | 2 &&& 3 | 4").expect("&&& rows").len(), 3);
        assert_eq!(parse_table("just text"), None);
        assert_eq!(parse_table("one | row"), None);
        let d = drawing("x | y\n1 | 2", 10, 10).expect("drawing");
        assert_eq!(d.table.as_deref().map(<[_]>::len), Some(2));
    }

    #[test]
    fn grounded_caption_answer() {
        let a = "A <p>dog</p> [0.10, 0.20, 0.30, 0.40] chases <p>two balls</p> [0.50, 0.50, 0.60, 0.60; 0.70, 0.70, 0.80, 0.80].";
        let g = parse_answer(a);
        assert_eq!(g.len(), 2);
        // Demo order: right to left.
        assert_eq!(g[0].phrase.as_deref(), Some("two balls"));
        assert_eq!(g[0].shapes.len(), 2);
        assert_eq!(g[1].phrase.as_deref(), Some("dog"));
        assert_eq!(g[1].shapes, [Shape::Box { x1: 0.1, y1: 0.2, x2: 0.3, y2: 0.4 }]);
        let (b0, b1) = g[1].bracket_range;
        assert_eq!(&a[b0..b1], "[0.10, 0.20, 0.30, 0.40]");
        let (p0, p1) = g[1].phrase_range.expect("phrase");
        assert_eq!(&a[p0..p1], "<p>dog</p>");
    }

    #[test]
    fn bare_brackets_points_and_integers() {
        // REC answer: a bare bracket. Integers are ignored, so "[1, 0.5]" is one number: dropped.
        let g = parse_answer("[0.12, 0.34, 0.56, 0.78] and [1, 0.5] and [0.3,0.4]");
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].shapes, [Shape::Point { x: 0.3, y: 0.4 }]);
        assert!(g[1].shapes.is_empty());
        assert_eq!(g[2].shapes, [Shape::Box { x1: 0.12, y1: 0.34, x2: 0.56, y2: 0.78 }]);
        assert!(g.iter().all(|g| g.phrase.is_none()));
        // Not a coordinate bracket: letters inside.
        assert!(parse_answer("see [note 0.5, 0.5]").is_empty());
        // A phrase whose bracket is on the next line is still a bracket, but without the phrase.
        let g = parse_answer("<p>cat</p>\n[0.1, 0.2]");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].phrase.as_deref(), Some("cat"));
        let g = parse_answer("<p>a\nb</p> [0.1, 0.2]");
        assert_eq!((g.len(), g[0].phrase.as_deref()), (1, None));
    }

    #[test]
    fn lazy_phrase_quirk_is_kept() {
        // As with Python's regex, the lazy phrase runs over a "</p>" that has no bracket after it.
        let g = parse_answer("<p>a</p> and <p>b</p> [0.1, 0.2]");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].phrase.as_deref(), Some("a</p> and <p>b"));
    }

    #[test]
    fn keypoints_map_to_pixels_with_skeleton() -> Result<()> {
        let a = "<p>left shoulder</p> [0.40, 0.30], <p>left elbow</p> [0.38, 0.45], <p>nose</p> [0.50, 0.10]";
        // Tall image 200x400: square side 400, the image starts at x = 100.
        let d = drawing(a, 200, 400)?;
        let nose = d.groundings.iter().find(|g| g.phrase.as_deref() == Some("nose")).expect("nose");
        assert_eq!(nose.shapes, [Shape::Point { x: 0.5 * 400.0 - 100.0, y: 0.10 * 400.0 }]);
        // left_shoulder (6) - left_elbow (8) is edge [6, 8].
        assert_eq!(d.skeleton.len(), 1);
        assert_eq!(d.skeleton[0], [[0.40 * 400.0 - 100.0, 0.30 * 400.0], [0.38 * 400.0 - 100.0, 0.45 * 400.0]]);
        let json = serde_json::to_string(&d).expect("json");
        assert!(json.contains(r#""kind":"point""#), "{json}");
        Ok(())
    }

    #[test]
    fn padded_square_mapping() -> Result<()> {
        // Wide 333x217 (golden "wide"): pasted at y = (333-217)//2 = 58.
        let f = PaddedSquare::new(333, 217)?;
        assert_eq!(f.origin(), (0.0, 58.0));
        assert_eq!(f.to_pixels(0.5, 0.5), (166.5, 166.5 - 58.0));
        // Tall 200x347 (golden "tall"): x offset (347-200)//2 = 73.
        let f = PaddedSquare::new(200, 347)?;
        assert_eq!(f.origin(), (73.0, 0.0));
        let (x, y) = f.to_fraction(10.0, 20.0);
        let (px, py) = f.to_pixels(x, y);
        assert!((px - 10.0).abs() < 1e-9 && (py - 20.0).abs() < 1e-9);
        assert!(PaddedSquare::new(0, 5).is_err());
        let b = Shape::Box { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 }.to_pixels(&PaddedSquare::new(100, 50)?);
        assert_eq!(b, Shape::Box { x1: 0.0, y1: -25.0, x2: 100.0, y2: 75.0 });
        Ok(())
    }

    #[test]
    fn marker_and_unicode_do_not_panic() {
        assert!(parse_answer("|||[0.1, 0.2]").is_empty());
        let g = parse_answer("ünïcödé <p>猫</p> [0.1, 0.2] 😀 [0.3, 0.4; 0.5]");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].phrase.as_deref(), Some("猫"));
        assert_eq!(g[1].shapes, [Shape::Point { x: 0.3, y: 0.4 }]);
        for s in ["[", "]", "<p>", "<p></p>", "<p></p>[", "[;;;]", "1.", ".5", "0.1.2.3"] {
            let _ = parse_answer(s);
        }
        assert_eq!(decimals("0.1.2.3 12.5x 7 -0.25"), [0.1, 2.3, 12.5, 0.25]);
    }

    #[test]
    fn rec_box_parsing() {
        assert_eq!(parse_rec_box("[0.12, 0.34, 0.56, 0.78]"), Some([0.12, 0.34, 0.56, 0.78]));
        assert_eq!(parse_rec_box("The box is [0.1,0.2,0.3,0.4]."), Some([0.1, 0.2, 0.3, 0.4]));
        assert_eq!(parse_rec_box("0.1, 0.2, 0.3, 0.4]"), Some([0.1, 0.2, 0.3, 0.4]));
        assert_eq!(parse_rec_box("[0.1, 0.2]"), None);
        assert_eq!(parse_rec_box("no box"), None);
    }
}
