use super::*;
use proptest::prelude::*;
use unicode_segmentation::UnicodeSegmentation;

fn wa(md: &str) -> String {
    to_whatsapp(md)
}

// ---- to_whatsapp: inline ------------------------------------------

#[test]
fn bold_both_spellings() {
    assert_eq!(wa("a **bold** b"), "a *bold* b");
    assert_eq!(wa("a __bold__ b"), "a *bold* b");
    assert_eq!(wa("**Note:** read"), "*Note:* read");
}

#[test]
fn italic_both_spellings() {
    assert_eq!(wa("an *italic* word"), "an _italic_ word");
    assert_eq!(wa("an _italic_ word"), "an _italic_ word");
}

#[test]
fn bold_italic_and_nesting() {
    // CommonMark reads `***x***` as emphasis around strong.
    assert_eq!(wa("***both***"), "_*both*_");
    assert_eq!(wa("**bold *and italic* here**"), "*bold _and italic_ here*");
    assert_eq!(wa("*italic **bold** more*"), "_italic *bold* more_");
    assert_eq!(wa("**outer **inner** outer**"), "*outer inner outer*");
}

#[test]
fn strikethrough() {
    assert_eq!(wa("~~gone~~ here"), "~gone~ here");
    assert_eq!(wa("about ~5 min"), "about ~5 min");
    assert_eq!(wa("~~**both**~~"), "~*both*~");
}

#[test]
fn markers_that_are_not_emphasis_stay() {
    assert_eq!(wa("snake_case_name"), "snake_case_name");
    assert_eq!(wa("2 * 3 * 4"), "2 * 3 * 4");
    assert_eq!(wa("**unclosed"), "**unclosed");
    assert_eq!(wa("a ** b"), "a ** b");
    assert_eq!(wa("use __init__ here"), "use *init* here");
}

#[test]
fn escapes() {
    assert_eq!(wa(r"\*not italic\*"), "*not italic*");
    assert_eq!(wa(r"\_x\_ and \# and \\"), r"_x_ and # and \");
    assert_eq!(wa(r"\# not a heading"), "# not a heading");
    assert_eq!(wa(r"C:\path"), r"C:\path");
    assert_eq!(wa("AT&T &amp; &copy;"), "AT&T & ©");
}

#[test]
fn inline_code_is_untouched() {
    assert_eq!(wa("run `cargo **test**` now"), "run `cargo **test**` now");
    assert_eq!(wa("a `[x](y)` b"), "a `[x](y)` b");
    assert_eq!(wa("``a ` b``"), "``a ` b``");
    assert_eq!(wa("`` `x` ``"), "`` `x` ``");
    assert_eq!(wa("`` plain ``"), "`plain`");
    assert_eq!(wa("a `unclosed"), "a `unclosed");
    assert_eq!(wa("**`x`**"), "*`x`*");
}

#[test]
fn links() {
    assert_eq!(
        wa("see [the docs](https://x.dev/docs)"),
        "see the docs (https://x.dev/docs)"
    );
    assert_eq!(wa("[https://x.dev](https://x.dev)"), "https://x.dev");
    assert_eq!(wa("[x.dev](https://x.dev/)"), "https://x.dev/");
    assert_eq!(wa("[a@b.io](mailto:a@b.io)"), "a@b.io");
    assert_eq!(wa("[t](https://x.dev \"Title\")"), "t (https://x.dev)");
    assert_eq!(
        wa("[wiki](https://en.wikipedia.org/wiki/Rust_(language))"),
        "wiki (https://en.wikipedia.org/wiki/Rust_(language))"
    );
    assert_eq!(wa("[t](<https://x.dev/a b>)"), "t (https://x.dev/a b)");
    assert_eq!(
        wa("[**bold** text](https://x.dev)"),
        "*bold* text (https://x.dev)"
    );
    assert_eq!(wa("[empty]()"), "empty");
    assert_eq!(wa("[not a link] (x)"), "[not a link] (x)");
    assert_eq!(wa("[ref][1]"), "[ref][1]");
    // Brackets are allowed in a CommonMark link destination.
    assert_eq!(wa("[v6](http://[::1]/)"), "v6 (http://[::1]/)");
    assert_eq!(wa("[ref][1]\n\n[1]: https://r.dev"), "ref (https://r.dev)");
    assert_eq!(
        wa("[a\nb](https://u.dev) **[c](https://c.dev)**"),
        "a\nb (https://u.dev) *c (https://c.dev)*"
    );
}

#[test]
fn images() {
    assert_eq!(
        wa("![a cat](https://x.dev/c.png)"),
        "a cat (https://x.dev/c.png)"
    );
    assert_eq!(wa("![](https://x.dev/c.png)"), "https://x.dev/c.png");
    assert_eq!(wa("wow!"), "wow!");
}

#[test]
fn urls() {
    assert_eq!(wa("<https://x.dev/a_b>"), "https://x.dev/a_b");
    assert_eq!(wa("<me@x.dev>"), "me@x.dev");
    assert_eq!(
        wa("at https://x.dev/*star*/_u_ ok"),
        "at https://x.dev/*star*/_u_ ok"
    );
    assert_eq!(wa("**https://x.dev**"), "*https://x.dev*");
    assert_eq!(wa("(see https://x.dev/a)."), "(see https://x.dev/a).");
    assert_eq!(
        wa("see https://x.dev/a_(b)_ ok"),
        "see https://x.dev/a_(b)_ ok"
    );
    assert_eq!(wa("https://x.dev/~a~ and ~b~"), "https://x.dev/~a~ and ~b~");
}

#[test]
fn html_like_tags_stay() {
    assert_eq!(wa("a <b>tag</b> <br/> x"), "a <b>tag</b> <br/> x");
    assert_eq!(wa("Vec<u8> and <T>"), "Vec<u8> and <T>");
    assert_eq!(
        wa("<div>\nhi\n</div>\n\nafter"),
        "<div>\nhi\n</div>\n\nafter"
    );
}

// ---- to_whatsapp: blocks ------------------------------------------

#[test]
fn headings() {
    assert_eq!(wa("# Title"), "*Title*");
    assert_eq!(wa("###### Six"), "*Six*");
    assert_eq!(wa("## Closed ##"), "*Closed*");
    assert_eq!(wa("## C#"), "*C#*");
    assert_eq!(wa("## The **key** point"), "*The key point*");
    assert_eq!(wa("### An *aside*"), "*An _aside_*");
    assert_eq!(wa("#hashtag"), "#hashtag");
    assert_eq!(wa("####### seven"), "####### seven");
    assert_eq!(wa("Intro\n## Next\nbody"), "Intro\n*Next*\nbody");
    assert_eq!(wa("a\n\n#\n\nb"), "a\n\nb");
    // Setext headings: a `---` right under text underlines it.
    assert_eq!(wa("Title\n==="), "*Title*");
    assert_eq!(wa("text\n---\nmore"), "*text*\nmore");
}

#[test]
fn bullet_lists() {
    assert_eq!(wa("* one\n+ two\n- three"), "- one\n- two\n- three");
    assert_eq!(
        wa("- a\n  * nested\n    + deeper"),
        "- a\n  - nested\n    - deeper"
    );
    assert_eq!(wa("* **Name**: desc"), "- *Name*: desc");
    // Nesting is by CommonMark's rules, indented by the parent marker.
    assert_eq!(wa("- a\n    - b"), "- a\n  - b");
    assert_eq!(wa("1. a\n  - b"), "1. a\n- b");
    assert_eq!(wa("- a\n\n  b\n- c"), "- a\n\n  b\n- c");
    assert_eq!(wa("- a\n  continued"), "- a\n  continued");
    assert_eq!(wa("-\n- b"), "-\n- b");
}

#[test]
fn numbered_lists_are_kept() {
    assert_eq!(
        wa("1. one\n2. **two**\n10) ten"),
        "1. one\n2. *two*\n10) ten"
    );
    assert_eq!(wa("1. a\n   1. nested"), "1. a\n   1. nested");
    assert_eq!(wa("1. a\n1. b\n1. c"), "1. a\n2. b\n3. c");
    assert_eq!(wa("3. x\n4. y"), "3. x\n4. y");
}

#[test]
fn task_lists() {
    assert_eq!(
        wa("- [ ] todo\n- [x] done\n- [X] also"),
        "☐ todo\n☑ done\n☑ also"
    );
    assert_eq!(wa("- a\n  * [ ] nested"), "- a\n  ☐ nested");
    assert_eq!(wa("1. [x] first"), "1. ☑ first");
    assert_eq!(wa("- [link](https://x.dev)"), "- link (https://x.dev)");
}

#[test]
fn code_fences() {
    let md = "Run:\n```rust\nlet x = **y**;\n\n\n# not a heading\n```\nDone";
    assert_eq!(
        wa(md),
        "Run:\n```\nlet x = **y**;\n\n\n# not a heading\n```\nDone"
    );
    assert_eq!(wa("~~~\n* a\n~~~"), "```\n* a\n```");
    assert_eq!(wa("````md\n```\nx\n```\n````"), "```\n```\nx\n```\n```");
    assert_eq!(wa("```\nunclosed *x*"), "```\nunclosed *x*\n```");
    assert_eq!(
        wa("1. step\n   ```sh\n   ls  -la\n     indented\n   ```"),
        "1. step\n```\nls  -la\n  indented\n```"
    );
    assert_eq!(
        wa("- a\n  ```\n  x\n  ```\n  after"),
        "- a\n```\nx\n```\n  after"
    );
    assert_eq!(wa("- ```\n  code\n  ```"), "-\n```\ncode\n```");
    assert_eq!(wa("> ```\n> code\n> ```"), "```\ncode\n```");
    assert_eq!(
        wa("text\n\n    indented code\n    more"),
        "text\n\n```\nindented code\nmore\n```"
    );
}

#[test]
fn tables() {
    let md = "| Name | Age |\n|---|---|\n| Ann | 31 |\n| Bob | 42 |";
    assert_eq!(wa(md), "Name: Ann, Age: 31\nName: Bob, Age: 42");
    let md = "Name | Age\n:--- | ---:\nAnn | 31";
    assert_eq!(wa(md), "Name: Ann, Age: 31");
    // As on GitHub, a pipe in a cell is escaped even in code, and
    // cells beyond the header's are dropped.
    let md = "| **Key** | Value |\n| :-: | - |\n| a | `x\\|y` |\n| b |  |\n| c | d \\| e | extra |";
    assert_eq!(
        wa(md),
        "*Key*: a, Value: `x|y`\n*Key*: b\n*Key*: c, Value: d | e"
    );
    assert_eq!(wa("| A | B |\n|---|---|\n| `x|y` |"), "A: `x, B: y`");
    let md = "| A | B |\n|---|---|";
    assert_eq!(wa(md), "A, B");
    let md = "Before\n\n| A | B |\n|---|---|\n| 1 | 2 |\n\nAfter";
    assert_eq!(wa(md), "Before\n\nA: 1, B: 2\n\nAfter");
    // As on GitHub, a line right under a table is one more row.
    let md = "| A | B |\n|---|---|\n| 1 | 2 |\nAfter";
    assert_eq!(wa(md), "A: 1, B: 2\nA: After");
}

#[test]
fn tables_without_separator_stay() {
    assert_eq!(wa("| a | **b** |\n| c | d |"), "| a | *b* |\n| c | d |");
    assert_eq!(wa("| a | b |\n|---|"), "| a | b |\n|---|");
}

#[test]
fn horizontal_rules() {
    assert_eq!(wa("a\n\n---\n\nb"), "a\n\n———\n\nb");
    assert_eq!(wa("***"), "———");
    assert_eq!(wa("___"), "———");
    assert_eq!(wa("- - -"), "———");
    assert_eq!(wa(" * * * "), "———");
    assert_eq!(wa("--"), "--");
}

#[test]
fn blockquotes() {
    assert_eq!(wa("> quoted **text**"), "> quoted *text*");
    assert_eq!(wa(">no space"), "> no space");
    assert_eq!(wa("> a\n>\n> b"), "> a\n>\n> b");
    assert_eq!(wa(">> nested"), "> > nested");
    assert_eq!(wa("> ## Title\n> * item"), "> *Title*\n> - item");
    assert_eq!(wa("a -> b"), "a -> b");
    assert_eq!(wa("> a\nlazy"), "> a\n> lazy");
    assert_eq!(wa("x\n\n> q\n\ny"), "x\n\n> q\n\ny");
    assert_eq!(wa("> - a\n>\n> - b"), "> - a\n>\n> - b");
    assert_eq!(wa("- > q\n  > r"), "- > q\n  > r");
}

#[test]
fn blank_lines_and_trimming() {
    assert_eq!(wa("\n\n  a  \n\n\n\n\nb\n\nc\n\n\n"), "a\n\nb\n\nc");
    assert_eq!(wa("a\n \t \n\nb"), "a\n\nb");
    assert_eq!(wa("line one  \nline two"), "line one\nline two");
    assert_eq!(wa("line one\\\nline two"), "line one\nline two");
    assert_eq!(wa("a\r\n\r\n\r\n\r\nb"), "a\n\nb");
    assert_eq!(wa(""), "");
    assert_eq!(wa(" \n\n "), "");
}

#[test]
fn realistic_summary() {
    let md = "\
## Summary of the week

Here's what happened:

* **Monday**: shipped the *beta*
* **Tuesday**: fixed [issue #12](https://git.example/issues/12)
  - [x] wrote tests
  - [ ] docs



### Numbers

| Metric | Value |
|--------|------:|
| Users  | 1,204 |
| Churn  | 2.1%  |

```python
def total(xs):
return sum(x**2 for x in xs)  # __not__ bold
```

---

> Keep going! ~~No~~ Some blockers.
";
    let expected = "\
*Summary of the week*

Here's what happened:

- *Monday*: shipped the _beta_
- *Tuesday*: fixed issue #12 (https://git.example/issues/12)
  ☑ wrote tests
  ☐ docs

*Numbers*

Metric: Users, Value: 1,204
Metric: Churn, Value: 2.1%

```
def total(xs):
return sum(x**2 for x in xs)  # __not__ bold
```

———

> Keep going! ~No~ Some blockers.";
    assert_eq!(wa(md), expected);
}

#[test]
fn realistic_steps() {
    let md = "\
# Setup

1. Install:
   ```bash
   cargo install pocketbrain
   ```
2. Set `POCKETBRAIN_TOKEN` (see <https://docs.example/env>).
3. ***Restart*** the service.

**Tip:** run `pocketbrain status` \\*after\\* restarting.";
    let expected = "\
*Setup*

1. Install:
```
cargo install pocketbrain
```
2. Set `POCKETBRAIN_TOKEN` (see https://docs.example/env).
3. _*Restart*_ the service.

*Tip:* run `pocketbrain status` *after* restarting.";
    assert_eq!(wa(md), expected);
}

// ---- chunk ------------------------------------------------------------

fn lens(chunks: &[String]) -> Vec<usize> {
    chunks.iter().map(|c| c.chars().count()).collect()
}

#[test]
fn short_text_is_one_trimmed_chunk() {
    assert_eq!(chunk("  hello world \n", 100), vec!["hello world"]);
    assert_eq!(chunk("exactly10!", 10), vec!["exactly10!"]);
}

#[test]
fn empty_text_gives_no_chunks() {
    assert!(chunk("", 10).is_empty());
    assert!(chunk(" \n\n\t ", 10).is_empty());
    assert!(render("\n\n", 10).is_empty());
}

#[test]
fn prefers_paragraphs() {
    let text = "first para\nline two\n\nsecond para\nline four";
    assert_eq!(
        chunk(text, 35),
        vec!["first para\nline two", "second para\nline four"]
    );
}

#[test]
fn then_lines() {
    let text = "alpha beta gamma\ndelta epsilon\nzeta";
    assert_eq!(
        chunk(text, 32),
        vec!["alpha beta gamma\ndelta epsilon", "zeta"]
    );
    assert_eq!(
        chunk(text, 20),
        vec!["alpha beta gamma", "delta epsilon\nzeta"]
    );
}

#[test]
fn then_words() {
    let text = "one two three four five six";
    assert_eq!(chunk(text, 10), vec!["one two", "three four", "five six"]);
}

#[test]
fn hard_splits_only_an_overlong_word() {
    assert_eq!(chunk("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    assert_eq!(chunk("ab cdefghijkl", 5), vec!["ab", "cdefg", "hijkl"]);
}

#[test]
fn counts_chars_not_bytes() {
    let text = "ж".repeat(10) + " " + &"😀".repeat(5);
    assert_eq!(chunk(&text, 10), vec!["ж".repeat(10), "😀".repeat(5)]);
}

#[test]
fn no_break_spaces_are_a_last_resort() {
    assert_eq!(
        chunk("aaaa\u{a0}bbbb cccc", 10),
        vec!["aaaa\u{a0}bbbb", "cccc"]
    );
    assert_eq!(chunk("aaaa\u{a0}bbbb", 6), vec!["aaaa", "bbbb"]);
}

#[test]
fn hard_split_keeps_clusters_whole() {
    let text = "e\u{301}".repeat(4);
    assert_eq!(
        chunk(&text, 3),
        vec!["e\u{301}", "e\u{301}", "e\u{301}", "e\u{301}"]
    );
    let family = "👨\u{200d}👩\u{200d}👧";
    assert_eq!(chunk(&format!("ab{family}"), 5), vec!["ab", family]);
    assert_eq!(chunk("🇩🇪🇫🇷🇯🇵", 3), vec!["🇩🇪", "🇫🇷", "🇯🇵"]);
    assert_eq!(chunk("👍🏽👋🏿", 3), vec!["👍🏽", "👋🏿"]);
}

#[test]
fn a_space_carrying_a_mark_is_not_a_break() {
    assert_eq!(chunk("ab \u{301}cd", 3), vec!["ab", " \u{301}c", "d"]);
    assert_eq!(chunk("ab \u{301}cd ef", 6), vec!["ab \u{301}cd", "ef"]);
}

#[test]
fn a_cluster_longer_than_the_limit_is_cut() {
    let long = format!("e{}", "\u{301}".repeat(5));
    assert_eq!(
        chunk(&format!("{long} xy"), 4),
        vec![
            format!("e{}", "\u{301}".repeat(3)),
            "\u{301}".repeat(2),
            "xy".to_string()
        ]
    );
    // A space starting such a cluster is not left alone in a chunk.
    assert_eq!(chunk(" \u{301}", 1), vec!["\u{301}"]);
}

#[test]
fn does_not_split_inline_spans() {
    let text = "word *bold words here* _it alic_ ~str ike~ `co de` tail";
    assert_eq!(
        chunk(text, 21),
        vec![
            "word",
            "*bold words here*",
            "_it alic_ ~str ike~",
            "`co de` tail"
        ]
    );
    assert_eq!(
        chunk("a ```mono spaced``` b", 17),
        vec!["a", "```mono spaced```", "b"]
    );
}

#[test]
fn splits_a_span_only_when_it_alone_is_too_long() {
    assert_eq!(
        chunk("*bold that is far too long*", 12),
        vec!["*bold that", "is far too", "long*"]
    );
}

#[test]
fn keeps_a_fitting_code_block_whole() {
    let text = "intro line\n```\nlet a = 1;\nlet b = 2;\n```\noutro";
    assert_eq!(
        chunk(text, 35),
        vec!["intro line", "```\nlet a = 1;\nlet b = 2;\n```\noutro"]
    );
}

#[test]
fn splits_a_long_code_block_with_fences() {
    let code = (1..=6)
        .map(|i| format!("  line {i};"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("Here:\n```\n{code}\n```\nEnd.");
    // The line break before the block is outside it, so it wins.
    let chunks = chunk(&text, 40);
    assert_eq!(
        chunks,
        vec![
            "Here:",
            "```\n  line 1;\n  line 2;\n  line 3;\n```",
            "```\n  line 4;\n  line 5;\n  line 6;\n```",
            "End.",
        ]
    );
    // A block that starts the text is cut inside at once.
    let chunks = chunk(&format!("```\n{code}\n```\nEnd."), 42);
    assert_eq!(
        chunks,
        vec![
            "```\n  line 1;\n  line 2;\n  line 3;\n```",
            "```\n  line 4;\n  line 5;\n  line 6;\n```\nEnd.",
        ]
    );
    for c in &chunks {
        assert_eq!(c.matches("```").count() % 2, 0, "{c:?}");
    }
}

#[test]
fn splits_an_overlong_code_line() {
    let text = format!("```\n{}\n```", "x".repeat(30));
    let chunks = chunk(&text, 20);
    assert!(lens(&chunks).iter().all(|&l| l <= 20), "{chunks:?}");
    for c in &chunks {
        assert!(c.starts_with("```\n") && c.ends_with("\n```"), "{c:?}");
    }
    let joined: String = chunks.concat().chars().filter(|&c| c != '`').collect();
    assert_eq!(joined.replace('\n', ""), "x".repeat(30));
}

#[test]
fn tiny_limits_still_work() {
    assert_eq!(chunk("abc", 0), vec!["a", "b", "c"]);
    assert_eq!(chunk("```\nab\n```", 4), vec!["```", "ab", "```"]);
}

#[test]
fn render_converts_then_chunks() {
    let md = "# Title\n\nSome **bold** text.\n\n- item one\n- item two";
    assert_eq!(
        render(md, 30),
        vec!["*Title*\n\nSome *bold* text.", "- item one\n- item two"]
    );
}

// ---- property tests ---------------------------------------------------

fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// Checks the exact no-loss guarantee on the plan, that each chunk is
/// its piece rendered, and that pieces start and end between clusters
/// unless a cluster is longer than fits in a chunk.
fn check_lossless(text: &str, limit: usize) -> Result<(), TestCaseError> {
    let t = Chars::new(text);
    let chars = &t.c;
    let pieces = plan(&t, limit);
    let chunks = chunk(text, limit);
    prop_assert_eq!(pieces.len(), chunks.len());
    let mut at = 0;
    for (k, piece) in pieces.iter().enumerate() {
        prop_assert_eq!(&piece.render(chars), &chunks[k]);
        prop_assert!(piece.start >= at && piece.start < piece.end);
        prop_assert!(chars[at..piece.start].iter().all(|&c| is_ws(c)));
        let reopened = k > 0 && pieces[k - 1].close;
        prop_assert_eq!(piece.reopen, reopened);
        for p in [piece.start, piece.end] {
            if !t.edge[p] {
                let s = (0..p).rev().find(|&q| t.edge[q]).unwrap_or(0);
                let e = (p..=chars.len()).find(|&q| t.edge[q]).unwrap_or(p);
                let room = limit.max(1).saturating_sub(2 * FENCE_COST);
                prop_assert!(e - s > room, "cut at {p} inside a cluster {s}..{e}");
            }
        }
        at = piece.end;
    }
    prop_assert!(chars[at..].iter().all(|&c| is_ws(c)));
    if let Some(last) = pieces.last() {
        prop_assert!(!last.close);
    }
    Ok(())
}

fn no_ws(s: &str) -> String {
    s.chars().filter(|&c| !is_ws(c)).collect()
}

/// `text` without the clusters of whitespace only at either end.
fn trim_blank_clusters(text: &str) -> &str {
    let blank = |g: &str| g.chars().all(char::is_whitespace);
    let start = text
        .grapheme_indices(true)
        .find(|(_, g)| !blank(g))
        .map_or(text.len(), |(i, _)| i);
    let end = text
        .grapheme_indices(true)
        .rev()
        .find(|(_, g)| !blank(g))
        .map_or(start, |(i, g)| i + g.len());
    &text[start..end]
}

/// Words, spaces and line breaks, flags, emoji with skin tones, ZWJ
/// sequences, and letters or spaces carrying combining marks.
fn clustered() -> impl Strategy<Value = String> {
    use prop::sample::select;
    let token = prop_oneof![
        4 => "[a-zA-Z0-9]{1,8}",
        3 => Just(" ".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\n\n".to_string()),
        2 => select(vec!["🇩🇪", "🇫🇷", "🇯🇵", "🇧🇷", "🇺🇳"]).prop_map(str::to_string),
        2 => (
            select(vec!["👍", "👋", "🧑", "👩", "✌"]),
            select(vec!["\u{1f3fb}", "\u{1f3fc}", "\u{1f3fd}", "\u{1f3fe}", "\u{1f3ff}"]),
        )
            .prop_map(|(emoji, tone)| format!("{emoji}{tone}")),
        2 => select(vec![
            "👨\u{200d}👩\u{200d}👧",
            "👨\u{200d}👩\u{200d}👧\u{200d}👦",
            "👩🏽\u{200d}💻",
            "🏳\u{fe0f}\u{200d}🌈",
            "🧑🏿\u{200d}🤝\u{200d}🧑🏻",
        ])
        .prop_map(str::to_string),
        2 => (
            "[a-z ]",
            prop::collection::vec(select(vec!['\u{301}', '\u{308}', '\u{323}', '\u{20dd}']), 1..4),
        )
            .prop_map(|(base, marks)| base + &marks.into_iter().collect::<String>()),
    ];
    prop::collection::vec(token, 0..150).prop_map(|t| t.concat())
}

fn markdownish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => "[a-zA-Z0-9]{1,12}",
        3 => Just(" ".to_string()),
        2 => Just("\n".to_string()),
        1 => Just("\n\n".to_string()),
        1 => Just("\n```\n".to_string()),
        1 => Just("```".to_string()),
        1 => prop_oneof![Just("*"), Just("**"), Just("_"), Just("__"), Just("~~"), Just("~"), Just("`")]
            .prop_map(str::to_string),
        1 => prop_oneof![
            Just("é"), Just("e\u{301}"), Just("😀"), Just("👍🏽"), Just("👨\u{200d}👩\u{200d}👧"),
            Just("\u{a0}"), Just("\t"), Just("# "), Just("- [ ] "), Just("> "), Just("1. "),
            Just("[x](https://y.z/a_b)"), Just("| a | b |\n|---|---|\n| 1 | 2 |\n"), Just("\\*"),
        ]
        .prop_map(str::to_string),
        1 => "\\PC{1,6}",
    ];
    prop::collection::vec(token, 0..300).prop_map(|t| t.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![markdownish(), any::<String>(), "(\\PC|\\s){0,600}"]
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![20usize..120, 20usize..5000]
}

fn word() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9é😀]{1,3}",
        prop_oneof![Just(""), Just("\u{301}")],
    )
        .prop_map(|(w, mark)| format!("{w}{mark}"))
}

fn words(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..=max).prop_map(|w| w.join(" "))
}

/// Words, whole spans no longer than 19 chars, and code blocks.
fn spanned() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        4 => word(),
        2 => words(3).prop_map(|w| format!("*{w}*")),
        2 => words(3).prop_map(|w| format!("_{w}_")),
        1 => words(3).prop_map(|w| format!("~{w}~")),
        1 => "[a-z*_~ ]{1,12}".prop_map(|w| format!("`{w}`")),
        1 => (word(), word(), word()).prop_map(|(a, b, c)| format!("*{a} _{b}_ {c}*")),
        1 => prop::collection::vec("[a-z*_~ ]{0,30}", 1..12)
            .prop_map(|lines| format!("\n```\n{}\n```\n", lines.join("\n"))),
    ];
    let sep = prop_oneof![3 => Just(" "), 1 => Just("\n"), 1 => Just("\n\n")];
    prop::collection::vec((item, sep), 0..200).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(item, sep)| item + sep)
            .collect::<String>()
    })
}

/// Every marker outside code comes in pairs, and fences too.
fn balanced(chunk: &str) -> bool {
    let mut fences = 0;
    let mut in_code = false;
    let mut outside = String::new();
    for line in chunk.split('\n') {
        if line.trim().starts_with(FENCE) {
            fences += 1;
            in_code = !in_code;
        } else if !in_code {
            outside.push_str(line);
            outside.push('\n');
        }
    }
    let parts: Vec<&str> = outside.split('`').collect();
    let even = |m: char| {
        parts
            .iter()
            .step_by(2)
            .map(|p| p.matches(m).count())
            .sum::<usize>()
            % 2
            == 0
    };
    fences % 2 == 0 && parts.len() % 2 == 1 && even('*') && even('_') && even('~')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunks_fit_are_nonempty_and_lose_nothing(text in any_text(), limit in limit()) {
        let chunks = chunk(&text, limit);
        for c in &chunks {
            prop_assert!(c.chars().count() <= limit, "{} > {limit}: {c:?}", c.chars().count());
            prop_assert!(!c.trim().is_empty());
        }
        // Public view: whitespace aside, only backticks (whole fences) are added.
        let joined = no_ws(&chunks.concat());
        let input = no_ws(&text);
        prop_assert_eq!(joined.replace('`', ""), input.replace('`', ""));
        let added = joined.matches('`').count() - input.matches('`').count();
        prop_assert_eq!(added % 6, 0);
        // Exact view: bodies in order, separated only by whitespace.
        check_lossless(&text, limit)?;
    }

    #[test]
    fn tiny_limits_keep_the_invariants(text in markdownish(), limit in 0usize..20) {
        for c in chunk(&text, limit) {
            prop_assert!(c.chars().count() <= limit.max(1));
            prop_assert!(!c.trim().is_empty());
        }
        check_lossless(&text, limit)?;
    }

    #[test]
    fn whole_spans_are_never_split(text in spanned(), limit in limit()) {
        prop_assert!(balanced(&text), "generator made unbalanced text");
        let chunks = chunk(&text, limit);
        for c in &chunks {
            prop_assert!(c.chars().count() <= limit);
            prop_assert!(balanced(c), "unbalanced chunk {c:?}\nof {text:?}");
        }
        check_lossless(&text, limit)?;
    }

    #[test]
    fn chunks_never_split_a_cluster(
        text in clustered(),
        limit in prop_oneof![0usize..24, 24usize..400],
    ) {
        let chunks = chunk(&text, limit);
        let limit = limit.max(1);
        let edges: std::collections::HashSet<usize> = text
            .grapheme_indices(true)
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let longer = |at: usize| {
            text.grapheme_indices(true)
                .any(|(i, g)| i < at && at < i + g.len() && g.chars().count() > limit)
        };
        // Each chunk is the next piece of the text, after whitespace
        // only (nothing here makes a code block, so no fences are added).
        let mut at = 0;
        for c in &chunks {
            let size = c.chars().count();
            prop_assert!(size <= limit || c.graphemes(true).count() == 1, "{size} > {limit}");
            prop_assert!(!c.trim().is_empty());
            let rest = &text[at..];
            let start = std::iter::once(0)
                .chain(
                    rest.char_indices()
                        .take_while(|(_, ch)| ch.is_whitespace())
                        .map(|(i, ch)| i + ch.len_utf8()),
                )
                .find(|&i| rest[i..].starts_with(c.as_str()));
            prop_assert!(start.is_some(), "{c:?} is not next in {rest:?}");
            let start = at + start.unwrap_or(0);
            let end = start + c.len();
            for cut in [start, end] {
                prop_assert!(
                    edges.contains(&cut) || longer(cut),
                    "cut at byte {cut} splits a cluster of {text:?}"
                );
            }
            at = end;
        }
        prop_assert!(text[at..].chars().all(char::is_whitespace));
        check_lossless(&text, limit)?;
    }

    #[test]
    fn render_never_panics_and_fits(md in any_text(), limit in limit()) {
        for c in render(&md, limit) {
            prop_assert!(c.chars().count() <= limit);
            prop_assert!(!c.trim().is_empty());
        }
    }

    #[test]
    fn text_that_fits_is_one_chunk(text in any_text()) {
        let trimmed = trim_blank_clusters(&text);
        let limit = trimmed.chars().count().max(1);
        let chunks = chunk(&text, limit);
        if trimmed.is_empty() {
            prop_assert!(chunks.is_empty());
        } else {
            prop_assert_eq!(chunks, vec![trimmed.to_string()]);
        }
    }
}

/// Found by `tiny_limits_keep_the_invariants`: a family emoji in an
/// unclosed code block, at a limit that leaves room for it.
#[test]
fn a_cluster_in_a_reopened_code_block_is_not_cut() {
    let text = "\n```\n*\n```\na\n```\n#    👨\u{200d}👩\u{200d}👧A0aA";
    proptest::test_runner::TestRunner::default()
        .run(&proptest::strategy::Just(()), |_| check_lossless(text, 16))
        .unwrap();
}

/// Found by `tiny_limits_keep_the_invariants`: a prepended mark (U+1193F
/// joins the grapheme after it, here a space) with a limit of 0.
#[test]
fn a_prepended_mark_before_spaces_makes_no_blank_chunk() {
    let chunks = chunk("\u{1193F}  a", 0);
    for c in &chunks {
        assert!(!c.trim().is_empty(), "{chunks:?}");
    }
    check_lossless("\u{1193F}  a", 0).unwrap();
}
