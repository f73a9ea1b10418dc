//! Cutting WhatsApp text into chunks of bounded length, by the rules in
//! the parent module's documentation: [`plan`] finds the cuts, [`Piece`]
//! renders one chunk.

use unicode_segmentation::UnicodeSegmentation;

use super::FENCE;

/// What an added fence costs: three backticks and a newline.
pub(super) const FENCE_COST: usize = 4;
/// Below this limit code blocks are not re-fenced when split.
const MIN_FENCED_LIMIT: usize = 16;

/// Break preferences, best first.
const P_PARA: u8 = 0;
const P_LINE: u8 = 1;
const P_WORD: u8 = 2;
const P_CODE_LINE: u8 = 3;
const P_CODE_WORD: u8 = 4;
const P_SPAN: u8 = 5;
const P_NO_BREAK: u8 = 6;
const PRIORITIES: usize = 7;

/// One chunk: `chars[start..end]`, with a fence added before and/or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) reopen: bool,
    pub(super) close: bool,
}

impl Piece {
    pub(super) fn render(&self, chars: &[char]) -> String {
        let mut out = String::new();
        if self.reopen {
            out.push_str(FENCE);
            out.push('\n');
        }
        out.extend(&chars[self.start..self.end]);
        if self.close {
            out.push('\n');
            out.push_str(FENCE);
        }
        out
    }
}

/// The text to cut, as chars, with its grapheme clusters.
pub(super) struct Chars {
    pub(super) c: Vec<char>,
    /// `edge[k]`: whether a cluster starts at `k` (or `k` is the end).
    pub(super) edge: Vec<bool>,
    /// `ws[k]`: whether `c[k]` is in a cluster of whitespace only; such
    /// clusters are what the cuts may drop.
    pub(super) ws: Vec<bool>,
}

impl Chars {
    pub(super) fn new(text: &str) -> Chars {
        let mut c = Vec::with_capacity(text.len());
        let mut edge = Vec::with_capacity(text.len() + 1);
        let mut ws = Vec::with_capacity(text.len());
        for cluster in text.graphemes(true) {
            let blank = cluster.chars().all(char::is_whitespace);
            for (k, ch) in cluster.chars().enumerate() {
                c.push(ch);
                edge.push(k == 0);
                ws.push(blank);
            }
        }
        edge.push(true);
        Chars { c, edge, ws }
    }
}

/// No-break spaces: cut at only when nothing better fits.
fn is_no_break_space(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{2007}' | '\u{202f}')
}

/// A ```` ``` ```` block: first backtick of the opening fence, the newline
/// ending that line, first backtick of the closing fence, and the index
/// after it (the last two are the text's end when unclosed).
#[derive(Debug, Clone, Copy)]
struct Region {
    start: usize,
    open_end: usize,
    close: usize,
    end: usize,
}

/// A maximal whitespace run `s..e`, with its break priority (`None`: never
/// cut here) and whether cutting here splits a code block.
#[derive(Debug, Clone, Copy)]
struct Run {
    s: usize,
    e: usize,
    priority: Option<u8>,
    code: bool,
}

struct Layout {
    runs: Vec<Run>,
    regions: Vec<Region>,
}

impl Layout {
    fn new(text: &Chars, fenced: bool) -> Layout {
        let (c, ws) = (&text.c, &text.ws);
        let n = c.len();
        let mut regions = Vec::new();
        let mut spans = Vec::new();
        let mut open: Option<(usize, usize)> = None;
        let mut ls = 0;
        loop {
            let le = c[ls..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(n, |p| ls + p);
            let t = ls
                + c[ls..le]
                    .iter()
                    .take_while(|x| matches!(x, ' ' | '\t'))
                    .count();
            let ticks = run_len(&c[..le], t, '`');
            match open {
                None if ticks >= 3 && !c[t + ticks..le].contains(&'`') => open = Some((t, le)),
                None => wa_spans(c, ls, le, &mut spans),
                Some((start, open_end)) => {
                    if ticks >= 3 && c[t + ticks..le].iter().all(|x| x.is_whitespace()) {
                        regions.push(Region {
                            start,
                            open_end,
                            close: t,
                            end: t + ticks,
                        });
                        open = None;
                    }
                }
            }
            if le >= n {
                break;
            }
            ls = le + 1;
        }
        if let Some((start, open_end)) = open {
            regions.push(Region {
                start,
                open_end,
                close: n,
                end: n,
            });
        }

        let mut runs = Vec::new();
        let (mut ri, mut si) = (0, 0);
        let mut k = 0;
        while k < n {
            if !ws[k] {
                k += 1;
                continue;
            }
            let s = k;
            while k < n && ws[k] {
                k += 1;
            }
            let e = k;
            let newlines = c[s..e].iter().filter(|&&x| x == '\n').count();
            while regions.get(ri).is_some_and(|r| r.end <= s) {
                ri += 1;
            }
            while spans.get(si).is_some_and(|&(_, end)| end <= s) {
                si += 1;
            }
            let (priority, code) = if let Some(r) = regions.get(ri).filter(|r| r.start < s) {
                if !fenced {
                    (Some(P_SPAN), false)
                } else if s > r.open_end && e < r.close {
                    let p = if newlines > 0 {
                        P_CODE_LINE
                    } else {
                        P_CODE_WORD
                    };
                    (Some(p), true)
                } else {
                    (None, false)
                }
            } else if spans.get(si).is_some_and(|&(start, _)| start < s) {
                (Some(P_SPAN), false)
            } else {
                let p = match newlines {
                    0 => P_WORD,
                    1 => P_LINE,
                    _ => P_PARA,
                };
                (Some(p), false)
            };
            let no_break = c[s..e].iter().all(|&x| is_no_break_space(x));
            runs.push(Run {
                s,
                e,
                priority: priority.map(|p| if no_break { P_NO_BREAK } else { p }),
                code,
            });
        }
        Layout { runs, regions }
    }

    /// For a body whose first non-space is at `first` and that would end at
    /// `p`: where it ends and whether it stops inside a code block's content
    /// (so it needs a closing fence). A `p` inside a closing fence moves to
    /// the fence's start when that leaves a non-blank body.
    fn code_split(&self, first: usize, p: usize) -> (usize, bool) {
        let at = self.regions.partition_point(|r| r.end <= p);
        match self.regions.get(at) {
            Some(r) if r.start < p && p > r.open_end => {
                if p <= r.close {
                    (p, true)
                } else if r.close > first {
                    (r.close, true)
                } else {
                    (p, false)
                }
            }
            _ => (p, false),
        }
    }
}

/// WhatsApp formatting spans on the line `ls..le`, as `(start, end)`.
fn wa_spans(c: &[char], ls: usize, le: usize, spans: &mut Vec<(usize, usize)>) {
    const MARKERS: [char; 3] = ['*', '_', '~'];
    let mut no_closer = [usize::MAX; 3];
    let mut no_ticks = [usize::MAX; 3];
    let mut i = ls;
    while i < le {
        let ch = c[i];
        if ch == '`' {
            let n = run_len(&c[..le], i, '`');
            match wa_tick_end(c, i, n, le, &mut no_ticks) {
                Some(end) => {
                    spans.push((i, end));
                    i = end;
                }
                None => i += n,
            }
            continue;
        }
        if let Some(m) = MARKERS.iter().position(|&x| x == ch) {
            let opener =
                (i == ls || !c[i - 1].is_alphanumeric()) && i + 1 < le && !c[i + 1].is_whitespace();
            if opener && i + 1 < no_closer[m] {
                match wa_closer(c, i, le, &mut no_ticks) {
                    Some(j) => {
                        spans.push((i, j + 1));
                        i = j + 1;
                        continue;
                    }
                    None => no_closer[m] = i + 1,
                }
            }
        }
        i += 1;
    }
}

/// The end of the backtick span opened by the run of `n` at `i`: a single
/// or double run closes with the same, three or more with three or more.
fn wa_tick_end(c: &[char], i: usize, n: usize, le: usize, dead: &mut [usize; 3]) -> Option<usize> {
    let key = n.min(3) - 1;
    let from = i + n;
    if from >= dead[key] {
        return None;
    }
    let mut k = from;
    while k < le {
        if c[k] == '`' {
            let m = run_len(&c[..le], k, '`');
            if m == n || (n >= 3 && m >= 3) {
                return Some(k + m);
            }
            k += m;
        } else {
            k += 1;
        }
    }
    dead[key] = from;
    None
}

/// The closing marker for the one opening at `i`.
fn wa_closer(c: &[char], i: usize, le: usize, no_ticks: &mut [usize; 3]) -> Option<usize> {
    let ch = c[i];
    let mut k = i + 1;
    while k < le {
        let x = c[k];
        if x == '`' {
            let n = run_len(&c[..le], k, '`');
            k = wa_tick_end(c, k, n, le, no_ticks).unwrap_or(k + n);
            continue;
        }
        if x == ch
            && k > i + 1
            && !c[k - 1].is_whitespace()
            && (k + 1 >= le || !c[k + 1].is_alphanumeric())
        {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// Where the chunks are, as pieces of `chars`.
pub(super) fn plan(text: &Chars, limit: usize) -> Vec<Piece> {
    let (c, ws) = (&text.c, &text.ws);
    let limit = limit.max(1);
    let fenced = limit >= MIN_FENCED_LIMIT;
    let layout = Layout::new(text, fenced);
    let runs = &layout.runs;
    let mut rest_end = c.len();
    while rest_end > 0 && ws[rest_end - 1] {
        rest_end -= 1;
    }
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut reopen = false;
    loop {
        let budget = limit - if reopen { FENCE_COST } else { 0 };
        let mut first = pos;
        while first < rest_end && ws[first] {
            first += 1;
        }
        if first >= rest_end {
            break;
        }
        if reopen {
            // Keep a continued code line's indentation, unless it is huge.
            if let Some(nl) = c[pos..first].iter().rposition(|&x| x == '\n') {
                pos += nl + 1;
            }
            if first - pos >= budget / 2 {
                pos = first;
            }
        } else {
            pos = first;
        }
        if rest_end - pos <= budget {
            pieces.push(Piece {
                start: pos,
                end: rest_end,
                reopen,
                close: false,
            });
            break;
        }

        let mut best: [Option<Run>; PRIORITIES] = [None; PRIORITIES];
        let from = runs.partition_point(|r| r.s <= pos);
        for run in &runs[from..] {
            if run.s - pos > budget {
                break;
            }
            let cost = if run.code { FENCE_COST } else { 0 };
            if let Some(p) = run.priority
                && run.s - pos + cost <= budget
            {
                best[usize::from(p)] = Some(*run);
            }
        }
        // Where this piece ends, whether it closes a code block, where the
        // next one starts, and whether it may be dropped when blank.
        let (end, close, next, droppable) = if let Some(run) = best.into_iter().flatten().next() {
            let next = if run.code { run.s } else { run.e };
            (run.s, run.code, next, !run.code)
        } else {
            // No whitespace to cut at: cut the word at the last cluster edge
            // that fits, or inside the first cluster when it alone is longer.
            let back_off = |end: usize| {
                (first + 1..=end)
                    .rev()
                    .find(|&p| text.edge[p])
                    .unwrap_or(end)
            };
            let (mut p, mut close) = layout.code_split(first, back_off(pos + budget));
            if !fenced {
                close = false;
            }
            if close && p - pos + FENCE_COST > budget {
                (p, close) = layout.code_split(first, back_off(pos + budget - FENCE_COST));
            }
            if !text.edge[p] && pos < first {
                // The kept indentation leaves no room for the first cluster
                // whole: drop the indentation rather than cut the cluster.
                pos = first;
                continue;
            }
            debug_assert!(p > first, "empty piece at {pos}");
            (p, close, p, true)
        };
        if droppable && !reopen && c[pos..end].iter().all(|x| x.is_whitespace()) {
            // A cut inside a cluster that starts with a space (one carrying
            // combining marks), or what such a cut left before (a prepended
            // mark joins the space after it), would be a blank chunk: drop it.
            pos = next;
            continue;
        }
        pieces.push(Piece {
            start: pos,
            end,
            reopen,
            close,
        });
        reopen = close;
        pos = next;
    }
    pieces
}

fn run_len(c: &[char], i: usize, ch: char) -> usize {
    c[i..].iter().take_while(|&&x| x == ch).count()
}
