//! A broadcast's text: Telegram's HTML parse mode, checked strictly before anything is queued,
//! and turned into a preview for the dashboard (docs/ADMIN.md, "Broadcast").
//!
//! * **Only what Telegram allows**, each tag with only its own attributes: `b strong i em u ins
//!   s strike del code pre blockquote[expandable] tg-spoiler span[class=tg-spoiler]
//!   a[href] code[class=language-…] tg-emoji[emoji-id]`; tags must nest and close; `&` must
//!   start an entity Telegram knows (`&lt; &gt; &amp; &quot;`, `&#…;`). Telegram would refuse
//!   anything else for every member, so it is refused here (400) with the reason.
//! * **Links are http(s) or tg only.** `href` is decoded (entities) and trimmed before its
//!   scheme is read, so `javascript:`, `&#106;avascript:`, `data:`, `vbscript:` and scheme-less
//!   links are refused, whatever their case. (Telegram itself would show a `javascript:` link
//!   as text; a dashboard preview must never make one clickable.)
//! * **The preview is rebuilt, never copied.** The parser emits its own markup for each
//!   accepted tag (`<b>`, `<a href rel=…>`, `<span class="spoiler">`, …) with every piece of
//!   text and every attribute escaped again, so nothing the admin typed reaches the page as
//!   markup — and the page's Content-Security-Policy forbids inline script anyway.

use super::pages::escape;

/// The longest text accepted (Telegram's limit is 4096, with room for the footer).
pub const MAX_TEXT: usize = 3500;

/// Tags Telegram's HTML parse mode understands.
pub const TAGS: &[&str] =
    &["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "tg-spoiler", "span", "tg-emoji", "blockquote"];

/// Checks a broadcast's text; Ok: its preview as dashboard HTML (safe to put in a page).
pub fn check(text: &str) -> Result<String, String> {
    let len = text.chars().count();
    if len == 0 || len > MAX_TEXT {
        return Err(format!("text: 1 to {MAX_TEXT} characters"));
    }
    let mut out = String::new();
    let mut open: Vec<&'static str> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '&']) {
        out.push_str(&escape(&rest[..at]));
        rest = &rest[at..];
        if rest.starts_with('&') {
            let (decoded, used) = entity(rest)?;
            out.push_str(&escape(&decoded));
            rest = &rest[used..];
            continue;
        }
        let Some(end) = rest.find('>') else {
            return Err("text: a < starts no tag; write &lt; for a literal <".into());
        };
        let inside = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = inside.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            match open.pop() {
                Some(top) if top == name => out.push_str(closing(top)),
                Some(top) => return Err(format!("text: </{name}> closes <{top}>; tags must nest")),
                None => return Err(format!("text: </{name}> closes nothing")),
            }
            continue;
        }
        let (tag, markup) = start_tag(inside, open.last().copied())?;
        open.push(tag);
        out.push_str(&markup);
    }
    out.push_str(&escape(rest));
    if let Some(tag) = open.last() {
        return Err(format!("text: <{tag}> is never closed"));
    }
    Ok(out)
}

/// An HTML entity at the start of `s` (which starts with `&`): its text and its length.
fn entity(s: &str) -> Result<(String, usize), String> {
    let bad = || "text: & must start &amp;, &lt;, &gt;, &quot; or a numeric entity (&#…;); write &amp; for a literal &".to_string();
    let end = s.find(';').filter(|e| *e <= 12).ok_or_else(bad)?;
    let name = &s[1..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok()
            } else {
                None
            };
            code.and_then(char::from_u32).ok_or_else(bad)?
        }
    };
    Ok((c.to_string(), end + 1))
}

/// Decodes the entities of an attribute's value.
fn decode(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let (c, used) = entity(&rest[at..])?;
        out.push_str(&c);
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The attributes of a start tag: `name="value"`, `name='value'`, `name=value` or `name`.
fn attributes(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let name_end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("text: a tag's attributes could not be read".into());
        }
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (v, used) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = after[1..].find(q).ok_or("text: an attribute's quote is never closed")?;
                    (&after[1..1 + close], close + 2)
                }
                _ => {
                    let e = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..e], e)
                }
            };
            rest = after[used..].trim_start();
            Some(decode(v)?)
        } else {
            None
        };
        out.push((name, value));
    }
    Ok(out)
}

/// A start tag's name and its preview markup; refuses what Telegram does not allow.
fn start_tag(inside: &str, parent: Option<&str>) -> Result<(&'static str, String), String> {
    let name_end = inside.find(char::is_whitespace).unwrap_or(inside.len());
    let raw = inside[..name_end].to_ascii_lowercase();
    let Some(tag) = TAGS.iter().copied().find(|t| *t == raw) else {
        return Err(format!("text: Telegram HTML allows only the tags {}; write &lt; for a literal <", TAGS.join(", ")));
    };
    let attrs = attributes(&inside[name_end..])?;
    let only = |allowed: &[&str]| -> Result<(), String> {
        match attrs.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("text: <{tag}> takes no attribute {n:?} in Telegram HTML")),
            None => Ok(()),
        }
    };
    let value = |name: &str| attrs.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone());
    let markup = match tag {
        "b" | "strong" => {
            only(&[])?;
            "<b>".to_string()
        }
        "i" | "em" => {
            only(&[])?;
            "<i>".to_string()
        }
        "u" | "ins" => {
            only(&[])?;
            "<u>".to_string()
        }
        "s" | "strike" | "del" => {
            only(&[])?;
            "<s>".to_string()
        }
        "tg-spoiler" => {
            only(&[])?;
            "<span class=\"spoiler\">".to_string()
        }
        "span" => {
            only(&["class"])?;
            if value("class").as_deref() != Some("tg-spoiler") {
                return Err("text: <span> is only <span class=\"tg-spoiler\"> in Telegram HTML".into());
            }
            "<span class=\"spoiler\">".to_string()
        }
        "pre" => {
            only(&[])?;
            "<pre>".to_string()
        }
        "code" => {
            only(&["class"])?;
            match value("class") {
                None => "<code>".to_string(),
                Some(c) if c.starts_with("language-") && parent == Some("pre") => format!("<code data-language=\"{}\">", escape(&c[9..])),
                Some(_) => return Err("text: <code class=\"language-…\"> is allowed only inside <pre>".into()),
            }
        }
        "blockquote" => {
            only(&["expandable"])?;
            "<blockquote>".to_string()
        }
        "tg-emoji" => {
            only(&["emoji-id"])?;
            if !value("emoji-id").is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
                return Err("text: <tg-emoji> needs emoji-id, the custom emoji's number".into());
            }
            "<span class=\"emoji\">".to_string()
        }
        "a" => {
            only(&["href"])?;
            let href = value("href").ok_or("text: <a> needs href=\"https://…\"")?;
            let href = safe_link(&href)?;
            format!("<a href=\"{}\" rel=\"noopener noreferrer nofollow\">", escape(&href))
        }
        _ => unreachable!("every tag of TAGS is handled"),
    };
    Ok((tag, markup))
}

/// A link's target: http, https or tg only (after entities are decoded and spaces trimmed).
pub fn safe_link(href: &str) -> Result<String, String> {
    let href = href.trim();
    let lower = href.to_ascii_lowercase();
    let ok = ["http://", "https://", "tg://"].iter().any(|s| lower.starts_with(s) && lower.len() > s.len());
    if !ok || href.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("text: a link must be an http://, https:// or tg:// address (javascript:, data: and other schemes are refused)".into());
    }
    Ok(href.to_string())
}

fn closing(tag: &str) -> &'static str {
    match tag {
        "b" | "strong" => "</b>",
        "i" | "em" => "</i>",
        "u" | "ins" => "</u>",
        "s" | "strike" | "del" => "</s>",
        "tg-spoiler" | "span" | "tg-emoji" => "</span>",
        "pre" => "</pre>",
        "code" => "</code>",
        "blockquote" => "</blockquote>",
        _ => "</a>",
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn only_telegram_html_is_accepted() {
        for ok in [
            "plain",
            "<b>bold</b> and <a href=\"https://t.me/x\">a link</a>",
            "1 &lt; 2 &amp; 3 &#62; 1 &#x1F600;",
            "<tg-spoiler>x</tg-spoiler> <span class=\"tg-spoiler\">y</span>",
            "<pre><code class=\"language-rust\">fn x() {}</code></pre>",
            "<blockquote expandable>quote</blockquote> <a href='tg://user?id=1'>me</a>",
            "<tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji>",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for bad in [
            "",
            "<script>x</script>",
            "1 < 2",
            "<div>x</div>",
            "<b>unclosed",
            "<b><i>crossed</b></i>",
            "</b>",
            "a & b",
            "<b onclick=\"x()\">x</b>",
            "<span>x</span>",
            "<code class=\"language-x\">outside pre</code>",
            "<tg-emoji>x</tg-emoji>",
            &"x".repeat(3501),
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_other_than_http_https_and_tg_are_refused_however_they_are_written() {
        for bad in [
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JavaScript:alert(1)\">x</a>",
            "<a href=\" javascript:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<a href=javascript:alert(1)>x</a>",
            "<a href=\"data:text/html,<script>\">x</a>",
            "<a href=\"vbscript:x\">x</a>",
            "<a href=\"//evil.example\">x</a>",
            "<a href=\"example.com\">x</a>",
            "<a href=\"https://\">x</a>",
            "<a>no href</a>",
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.starts_with("text:"), "{e}");
        }
    }

    #[test]
    fn the_preview_is_rebuilt_markup_with_everything_escaped() {
        let p = check("<b>Hi</b> &lt;script&gt; <a href=\"https://x.example/?a=1&amp;b=&quot;2\">go</a> it's").unwrap();
        assert_eq!(
            p,
            "<b>Hi</b> &lt;script&gt; <a href=\"https://x.example/?a=1&amp;b=&quot;2\" rel=\"noopener noreferrer nofollow\">go</a> it&#39;s"
        );
        let p = check("<span class=\"tg-spoiler\">s</span><pre><code class=\"language-a&quot;b\">c</code></pre>").unwrap();
        assert_eq!(p, "<span class=\"spoiler\">s</span><pre><code data-language=\"a&quot;b\">c</code></pre>");
    }
}
