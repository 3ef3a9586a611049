//! Telegram's `parse_mode=HTML`, and the checks Telegram runs on caller-supplied `entities`.
//!
//! The Bot API hands formatted text to TDLib, so the parser below follows TDLib's `parse_html`
//! byte for byte where it matters to a client: which tags and attributes are accepted, how HTML
//! entities decode (the `;` is optional), which error is reported first and at which byte offset,
//! and how entities come out (UTF-16 offsets, sorted the way TDLib sorts them).
//!
//! Not modelled: the later `fix_formatted_text` pass (trimming whitespace at the ends of the
//! message, splitting overlapping entities, stripping entities Telegram won't nest), punycode for
//! internationalised link hosts, and the `tg-time` tag of the newest Bot API versions.

use serde_json::{Map, Value, json};

/// Past-the-end reads return this, as TDLib reads the NUL after a C string.
const END: u8 = 0;

/// Entity offsets and lengths above this are refused before they are compared with the text.
const MAX_ENTITY_BOUND: i64 = 1_000_000;

/// Largest user identifier TDLib accepts in a `tg://user?id=` link.
const MAX_USER_ID: i64 = (1 << 40) - 1;

const SUPPORTED_TAGS: &[&str] =
    &["a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span", "pre", "code", "blockquote"];

/// Types the Bot API accepts in `entities`. The first eight are the ones Telegram also detects by itself.
const KNOWN_ENTITY_TYPES: &[&str] = &[
    "mention",
    "hashtag",
    "cashtag",
    "bot_command",
    "url",
    "email",
    "phone_number",
    "bank_card_number",
    "bold",
    "italic",
    "underline",
    "strikethrough",
    "spoiler",
    "blockquote",
    "expandable_blockquote",
    "code",
    "pre",
    "text_link",
    "text_mention",
    "custom_emoji",
];

/// Parses Telegram-HTML into plain text plus MessageEntity objects (as serde_json::Value,
/// shaped exactly like the Bot API `MessageEntity`: {"type","offset","length", and "url" /
/// "language" / "custom_emoji_id" / "user" where relevant}).
/// Offsets and lengths are in UTF-16 code units, as Telegram counts them.
/// On error returns the description Telegram gives AFTER the prefix "Bad Request: can't parse entities: ",
/// e.g. `Unsupported start tag "foo" at byte offset 5`.
pub fn parse_html(input: &str) -> Result<(String, Vec<serde_json::Value>), String> {
    HtmlParser::new(input).run()
}

/// Length of a string in UTF-16 code units (Telegram's unit for entity offsets).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Checks caller-supplied entities (the `entities` / `caption_entities` parameter) against the text:
/// each must be an object with a known "type" string, integer offset >= 0 and length >= 1, and lie within
/// the text (UTF-16 units); text_link needs "url", pre may have "language", text_mention needs "user" object,
/// custom_emoji needs "custom_emoji_id". Returns the normalized entities (sorted by offset) or an error
/// description (without the "Bad Request: " prefix), e.g. "entity begins after the end of the text at
/// UTF-16 offset 9".
///
/// Entities of length 0 are dropped without error, as Telegram does. Types Telegram detects by itself
/// (url, mention, hashtag …) are kept as given, since this server does not detect them.
pub fn check_entities(text: &str, entities: &[serde_json::Value]) -> Result<Vec<serde_json::Value>, String> {
    // The Bot API decodes every entity first, then TDLib validates arguments, then offsets, then
    // compares the ranges with the text; the first failure in that order is the one reported.
    let decoded = entities
        .iter()
        .map(|value| decode_entity(value).map_err(|e| format!("can't parse MessageEntity: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut checked = decoded.into_iter().map(validate_argument).collect::<Result<Vec<_>, _>>()?;
    for entity in &checked {
        check_bounds(entity)?;
    }
    checked.retain(|e| e.length > 0);
    let mut entities: Vec<Entity> = checked.into_iter().map(SuppliedEntity::into_entity).collect();
    sort_entities(&mut entities);
    for entity in &entities {
        check_range(text, entity)?;
    }
    Ok(entities.into_iter().map(Entity::into_json).collect())
}

// ---------------------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Entity {
    kind: &'static str,
    offset: usize,
    length: usize,
    /// The type-specific field: ("url", …), ("language", …), ("user", …) or ("custom_emoji_id", …).
    extra: Option<(&'static str, Value)>,
}

impl Entity {
    fn new(kind: &'static str, offset: usize, length: usize) -> Self {
        Self { kind, offset, length, extra: None }
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extra = Some((key, value.into()));
        self
    }

    fn same_range(&self, offset: usize, length: usize) -> bool {
        self.offset == offset && self.length == length
    }

    fn into_json(self) -> Value {
        let mut object = Map::new();
        object.insert("type".into(), self.kind.into());
        object.insert("offset".into(), self.offset.into());
        object.insert("length".into(), self.length.into());
        if let Some((key, value)) = self.extra {
            object.insert(key.into(), value);
        }
        Value::Object(object)
    }
}

fn mention_user(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": "" })
}

/// TDLib's order among entities starting at the same offset with the same length.
fn type_priority(kind: &str) -> u8 {
    match kind {
        "blockquote" | "expandable_blockquote" => 0,
        "pre" => 11,
        "code" => 20,
        "text_link" | "text_mention" => 49,
        "bold" => 90,
        "italic" => 91,
        "underline" => 92,
        "strikethrough" => 93,
        "spoiler" => 94,
        "custom_emoji" => 99,
        _ => 50,
    }
}

/// By offset, then outer (longer) first, then TDLib's type priority. Stable, like TDLib's.
fn sort_entities(entities: &mut [Entity]) {
    entities.sort_by(|a, b| a.offset.cmp(&b.offset).then(b.length.cmp(&a.length)).then(type_priority(a.kind).cmp(&type_priority(b.kind))));
}

// ---------------------------------------------------------------------------------------------
// HTML parser
// ---------------------------------------------------------------------------------------------

struct OpenTag {
    name: String,
    argument: String,
    /// UTF-16 offset in the output where the tag's content starts.
    offset: usize,
    /// Byte offset in the output, to read the text back for `<a>` without `href`.
    text_start: usize,
}

struct HtmlParser<'a> {
    src: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    utf16: usize,
    open: Vec<OpenTag>,
    entities: Vec<Entity>,
    decoded_surrogate: bool,
}

impl<'a> HtmlParser<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            src: input.as_bytes(),
            pos: 0,
            out: Vec::with_capacity(input.len()),
            utf16: 0,
            open: Vec::new(),
            entities: Vec::new(),
            decoded_surrogate: false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(END)
    }

    fn current(&self) -> u8 {
        self.at(self.pos)
    }

    fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.src.get(from..to).unwrap_or_default()
    }

    fn skip_spaces(&mut self) {
        while self.current() != END && is_space(self.current()) {
            self.pos += 1;
        }
    }

    fn run(mut self) -> Result<(String, Vec<Value>), String> {
        if self.src.contains(&0) {
            return Err("Text must not contain null bytes".into());
        }
        while self.pos < self.src.len() {
            match self.current() {
                b'&' if self.decode_text_entity() => {}
                b'<' => self.tag()?,
                byte => self.copy_byte(byte),
            }
        }
        self.finish()
    }

    /// Copies input bytes one by one; a character counts when its first byte passes.
    fn copy_byte(&mut self, byte: u8) {
        if is_utf8_first_byte(byte) {
            self.utf16 += if byte >= 0xf0 { 2 } else { 1 };
        }
        self.out.push(byte);
        self.pos += 1;
    }

    fn decode_text_entity(&mut self) -> bool {
        let Some((code, next)) = decode_html_entity(self.src, self.pos) else {
            return false;
        };
        self.pos = next;
        self.utf16 += if code > 0xffff { 2 } else { 1 };
        if !push_code_point(&mut self.out, code) {
            // TDLib writes the lone surrogate and only fails once the whole text is parsed.
            self.decoded_surrogate = true;
        }
        true
    }

    fn tag(&mut self) -> Result<(), String> {
        let begin = self.pos;
        self.pos += 1;
        if self.current() == b'/' { self.end_tag(begin) } else { self.start_tag(begin) }
    }

    fn start_tag(&mut self, begin: usize) -> Result<(), String> {
        let name_start = self.pos;
        while !is_space(self.current()) && self.current() != b'>' {
            self.pos += 1;
        }
        if self.current() == END {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        let name = lossy(self.slice(name_start, self.pos)).to_ascii_lowercase();
        if !SUPPORTED_TAGS.contains(&name.as_str()) {
            return Err(format!("Unsupported start tag \"{name}\" at byte offset {begin}"));
        }
        let argument = self.attributes(&name, begin)?;
        if name == "span" && argument != "spoiler" {
            return Err(format!("Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"));
        }
        self.pos += 1; // the '>'
        self.open.push(OpenTag { name, argument, offset: self.utf16, text_start: self.out.len() });
        Ok(())
    }

    /// Reads attributes up to the closing '>' and returns the tag's argument (href, language …).
    fn attributes(&mut self, tag: &str, begin: usize) -> Result<String, String> {
        let mut argument = String::new();
        loop {
            self.skip_spaces();
            if self.current() == b'>' {
                return Ok(argument);
            }
            let attribute_start = self.pos;
            while !is_space(self.current()) && !matches!(self.current(), b'=' | b'>' | b'/' | b'"' | b'\'') {
                self.pos += 1;
            }
            let attribute = self.slice(attribute_start, self.pos);
            if attribute.is_empty() {
                return Err(format!("Empty attribute name in the tag \"{tag}\" at byte offset {begin}"));
            }
            self.skip_spaces();
            if self.current() != b'=' {
                if self.current() == END {
                    return Err(format!("Unclosed start tag \"{tag}\" at byte offset {begin}"));
                }
                // A bare attribute; only `<blockquote expandable>` gives it a meaning.
                if tag == "blockquote" && attribute == b"expandable" {
                    argument = "1".into();
                }
                continue;
            }
            self.pos += 1;
            self.skip_spaces();
            if self.current() == END {
                return Err(format!("Unclosed start tag \"{tag}\" at byte offset {begin}"));
            }
            let value = match self.current() {
                b'"' | b'\'' => self.quoted_value(),
                _ => self.name_token()?,
            };
            if self.current() == END {
                return Err(format!("Unclosed start tag at byte offset {begin}"));
            }
            if let Some(new_argument) = tag_argument(tag, attribute, value) {
                argument = new_argument;
            }
        }
    }

    /// An unquoted value: letters, digits, '.' and '-', compared case-insensitively.
    fn name_token(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.current().is_ascii_alphanumeric() || matches!(self.current(), b'.' | b'-') {
            self.pos += 1;
        }
        if !is_space(self.current()) && self.current() != b'>' {
            return Err(format!("Unexpected end of name token at byte offset {start}"));
        }
        Ok(lossy(self.slice(start, self.pos)).to_ascii_lowercase())
    }

    /// A value in single or double quotes, with HTML entities decoded. A missing closing quote
    /// runs to the end of the input, which the caller reports as an unclosed tag.
    fn quoted_value(&mut self) -> String {
        let quote = self.current();
        self.pos += 1;
        let mut value = Vec::new();
        while self.current() != quote && self.current() != END {
            if self.current() == b'&'
                && let Some((code, next)) = decode_html_entity(self.src, self.pos)
            {
                push_code_point(&mut value, code);
                self.pos = next;
                continue;
            }
            value.push(self.current());
            self.pos += 1;
        }
        if self.current() == quote {
            self.pos += 1;
        }
        lossy(&value)
    }

    fn end_tag(&mut self, begin: usize) -> Result<(), String> {
        if self.open.is_empty() {
            return Err(format!("Unexpected end tag at byte offset {begin}"));
        }
        let name_start = self.pos + 1; // after the '/'
        while !is_space(self.current()) && self.current() != b'>' {
            self.pos += 1;
        }
        let end_name = lossy(self.slice(name_start, self.pos)).to_ascii_lowercase();
        while is_space(self.current()) && self.current() != END {
            self.pos += 1;
        }
        if self.current() != b'>' {
            return Err(format!("Unclosed end tag at byte offset {begin}"));
        }
        self.pos += 1;
        let Some(tag) = self.open.pop() else {
            return Err(format!("Unexpected end tag at byte offset {begin}"));
        };
        // `</>` closes whatever is open.
        if !end_name.is_empty() && end_name != tag.name {
            return Err(format!("Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{end_name}>\"", tag.name));
        }
        self.close(tag)
    }

    fn close(&mut self, tag: OpenTag) -> Result<(), String> {
        if self.utf16 <= tag.offset {
            return Ok(()); // empty entities are dropped, and so is their validation
        }
        let (offset, length) = (tag.offset, self.utf16 - tag.offset);
        let entity = match tag.name.as_str() {
            "b" | "strong" => Entity::new("bold", offset, length),
            "i" | "em" => Entity::new("italic", offset, length),
            "u" | "ins" => Entity::new("underline", offset, length),
            "s" | "strike" | "del" => Entity::new("strikethrough", offset, length),
            "tg-spoiler" | "span" => Entity::new("spoiler", offset, length),
            "blockquote" if tag.argument.is_empty() => Entity::new("blockquote", offset, length),
            "blockquote" => Entity::new("expandable_blockquote", offset, length),
            "tg-emoji" => {
                let id = custom_emoji_id(&tag.argument).ok_or_else(|| "Invalid custom emoji identifier specified".to_string())?;
                Entity::new("custom_emoji", offset, length).with("custom_emoji_id", id.to_string())
            }
            "a" => match self.link_entity(&tag, offset, length) {
                Some(entity) => entity,
                None => return Ok(()),
            },
            "pre" => {
                self.close_pre(offset, length);
                return Ok(());
            }
            "code" => {
                self.close_code(tag.argument, offset, length);
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.entities.push(entity);
        Ok(())
    }

    /// `<a>` without `href` links to its own text; a link Telegram would refuse is silently dropped.
    fn link_entity(&self, tag: &OpenTag, offset: usize, length: usize) -> Option<Entity> {
        let url = if tag.argument.is_empty() { lossy(self.out.get(tag.text_start..).unwrap_or_default()) } else { tag.argument.clone() };
        if let Some(user_id) = link_user_id(&url) {
            return Some(Entity::new("text_mention", offset, length).with("user", mention_user(user_id)));
        }
        let url = check_link(&url).ok()?;
        Some(Entity::new("text_link", offset, length).with("url", url))
    }

    /// `<code class="language-x"><pre>…</pre></code>`: the inner tag closes first.
    fn close_pre(&mut self, offset: usize, length: usize) {
        match self.entities.last_mut() {
            Some(code) if code.kind == "code" && code.same_range(offset, length) && code.extra.is_some() => {
                code.kind = "pre";
            }
            _ => self.entities.push(Entity::new("pre", offset, length)),
        }
    }

    /// `<pre><code class="language-x">…</code></pre>`: the code's language moves to the pre.
    fn close_code(&mut self, language: String, offset: usize, length: usize) {
        match self.entities.last_mut() {
            Some(pre) if pre.kind == "pre" && pre.same_range(offset, length) && !language.is_empty() => {
                pre.extra = Some(("language", language.into()));
            }
            _ if language.is_empty() => self.entities.push(Entity::new("code", offset, length)),
            _ => self.entities.push(Entity::new("code", offset, length).with("language", language)),
        }
    }

    fn finish(mut self) -> Result<(String, Vec<Value>), String> {
        if let Some(tag) = self.open.last() {
            return Err(format!("Can't find end tag corresponding to start tag \"{}\"", tag.name));
        }
        for entity in &mut self.entities {
            if entity.kind == "code" {
                entity.extra = None; // a language only counts on a pre
            }
        }
        drop_code_doubling_pre(&mut self.entities);
        sort_entities(&mut self.entities);
        if self.decoded_surrogate {
            return Err("Text contains invalid Unicode characters after decoding HTML entities, check for \
                        unmatched surrogate code units"
                .into());
        }
        let text = String::from_utf8(self.out).unwrap_or_else(|e| lossy(e.as_bytes()));
        Ok((text, self.entities.into_iter().map(Entity::into_json).collect()))
    }
}

/// `<pre><code>…</code></pre>` without a language gives one pre entity in the Bot API, because
/// Telegram does not let a code entity sit inside a pre.
fn drop_code_doubling_pre(entities: &mut Vec<Entity>) {
    let pre_ranges: Vec<(usize, usize)> = entities.iter().filter(|e| e.kind == "pre").map(|e| (e.offset, e.length)).collect();
    entities.retain(|e| e.kind != "code" || !pre_ranges.contains(&(e.offset, e.length)));
}

/// The argument an attribute sets on its tag, if it is one Telegram reads.
fn tag_argument(tag: &str, attribute: &[u8], value: String) -> Option<String> {
    match (tag, attribute) {
        ("a", b"href") | ("tg-emoji", b"emoji-id") => Some(value),
        ("code", b"class") => value.strip_prefix("language-").map(str::to_owned),
        ("span", b"class") => value.strip_prefix("tg-").map(str::to_owned),
        ("blockquote", b"expandable") => Some("1".into()),
        _ => None,
    }
}

/// TDLib's `is_space`, which counts the terminating NUL as a space.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | END)
}

fn is_utf8_first_byte(byte: u8) -> bool {
    byte & 0xc0 != 0x80
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes `&lt;` `&gt;` `&amp;` `&quot;` `&#NNN;` `&#xHH;` at `pos`; the `;` is optional, as in TDLib.
/// Returns the code point and the position after the entity, or None to keep the '&' literally.
fn decode_html_entity(src: &[u8], pos: usize) -> Option<(u32, usize)> {
    let at = |i: usize| src.get(i).copied().unwrap_or(END);
    let mut end = pos + 1;
    let code = if at(end) == b'#' {
        end += 1;
        let radix = if at(end) == b'x' {
            end += 1;
            16
        } else {
            10
        };
        let mut code: u32 = 0;
        while let Some(digit) = char::from(at(end)).to_digit(radix) {
            code = code.saturating_mul(radix).saturating_add(digit);
            end += 1;
        }
        if code == 0 || code >= 0x10_ffff || end - pos >= 10 {
            return None;
        }
        code
    } else {
        while at(end).is_ascii_alphabetic() {
            end += 1;
        }
        match src.get(pos + 1..end)? {
            b"lt" => u32::from('<'),
            b"gt" => u32::from('>'),
            b"amp" => u32::from('&'),
            b"quot" => u32::from('"'),
            _ => return None,
        }
    };
    if at(end) == b';' {
        end += 1;
    }
    Some((code, end))
}

/// Appends a code point as UTF-8; a surrogate cannot be, so it becomes U+FFFD and false is returned.
fn push_code_point(out: &mut Vec<u8>, code: u32) -> bool {
    let (ch, valid) = match char::from_u32(code) {
        Some(ch) => (ch, true),
        None => (char::REPLACEMENT_CHARACTER, false),
    };
    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
    valid
}

// ---------------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------------

/// TDLib's integer parsing: the whole string, written the way the number prints (no '+', no leading zeros).
fn parse_strict_i64(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| n.to_string() == s)
}

fn custom_emoji_id(s: &str) -> Option<i64> {
    parse_strict_i64(s).filter(|&id| id != 0)
}

fn is_valid_user_id(id: i64) -> bool {
    (1..=MAX_USER_ID).contains(&id)
}

/// The user a `tg://user?id=N` link mentions (TDLib's `LinkManager::get_link_user_id`).
fn link_user_id(url: &str) -> Option<i64> {
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("tg:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.strip_prefix("user")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let query = rest.strip_prefix('?')?;
    let query = query.split('#').next().unwrap_or_default();
    let id = query.split('&').find_map(|parameter| {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        (key == "id").then_some(value)
    })?;
    parse_strict_i64(id).filter(|&id| is_valid_user_id(id))
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { s.get(prefix.len()..) } else { None }
}

/// Splits at the first '/', '?' or '#', which ends a URL's authority.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (rest.get(..end).unwrap_or_default(), rest.get(end..).unwrap_or_default())
}

/// What follows the host, as TDLib prints it: always starting with '/'.
fn path_and_query(tail: &str) -> String {
    if tail.starts_with('/') { tail.to_string() } else { format!("/{tail}") }
}

/// Accepts a link the way Telegram does and returns it normalized (`telegram.org` →
/// `http://telegram.org/`), or the reason Telegram gives for refusing it.
fn check_link(url: &str) -> Result<String, &'static str> {
    for scheme in ["tg", "ton"] {
        if let Some(rest) = strip_prefix_ignore_case(url, &format!("{scheme}:")) {
            return check_app_link(scheme, rest);
        }
    }
    check_http_link(url)
}

fn check_app_link(scheme: &str, rest: &str) -> Result<String, &'static str> {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (host, tail) = split_authority(rest);
    if host.is_empty() {
        return Err("URL host is empty");
    }
    if !host.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err("Unallowed characters in URL host");
    }
    let query = path_and_query(tail);
    let query = if query.starts_with("/?") { query.get(1..).unwrap_or_default() } else { query.as_str() };
    Ok(format!("{scheme}://{}{query}", host.to_ascii_lowercase()))
}

fn check_http_link(url: &str) -> Result<String, &'static str> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.bytes().all(|c| c.is_ascii_alphanumeric()) => {
            (scheme.to_ascii_lowercase(), rest)
        }
        _ => ("http".to_string(), url),
    };
    if scheme != "http" && scheme != "https" {
        return Err("Unsupported URL protocol");
    }
    let (authority, tail) = split_authority(rest);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = split_port(host_port)?;
    if host.is_empty() {
        return Err("URL host is empty");
    }
    let is_ipv6 = host.starts_with('[');
    let host_char_ok = |c: char| !c.is_ascii() || c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if !is_ipv6 && (!host.chars().all(host_char_ok) || !host.contains('.')) {
        return Err("Wrong HTTP URL");
    }
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{userinfo}{}{port}{}", host.to_ascii_lowercase(), path_and_query(tail)))
}

fn split_port(host_port: &str) -> Result<(&str, Option<u16>), &'static str> {
    let colon = if host_port.starts_with('[') {
        // an IPv6 literal; only a ':' after the ']' starts a port
        host_port.find(']').and_then(|end| host_port.get(end..)?.find(':').map(|c| c + end))
    } else {
        host_port.rfind(':')
    };
    let Some(colon) = colon else {
        return Ok((host_port, None));
    };
    let port = host_port.get(colon + 1..).unwrap_or_default();
    match port.parse::<u16>() {
        Ok(number) if number > 0 && port.bytes().all(|c| c.is_ascii_digit()) => {
            Ok((host_port.get(..colon).unwrap_or_default(), Some(number)))
        }
        _ => Err("Wrong port number specified in the URL"),
    }
}

// ---------------------------------------------------------------------------------------------
// Caller-supplied entities
// ---------------------------------------------------------------------------------------------

enum Argument {
    None,
    Url(String),
    Language(String),
    User(Value, i64),
    CustomEmoji(i64),
}

struct SuppliedEntity {
    kind: &'static str,
    offset: i64,
    length: i64,
    argument: Argument,
}

impl SuppliedEntity {
    fn into_entity(self) -> Entity {
        // Bounds were checked before this is called, so the conversions cannot fail.
        let offset = usize::try_from(self.offset).unwrap_or_default();
        let length = usize::try_from(self.length).unwrap_or_default();
        let entity = Entity::new(self.kind, offset, length);
        match self.argument {
            Argument::None => entity,
            Argument::Url(url) => entity.with("url", url),
            Argument::Language(language) => entity.with("language", language),
            Argument::User(user, _) => entity.with("user", user),
            Argument::CustomEmoji(id) => entity.with("custom_emoji_id", id.to_string()),
        }
    }
}

/// The Bot API's JSON decoding of one MessageEntity: shape and field types only.
fn decode_entity(value: &Value) -> Result<SuppliedEntity, String> {
    let object = value.as_object().ok_or("expected an Object")?;
    let offset = required_integer(object, "offset", i64::from(i32::MIN), i64::from(i32::MAX))?;
    let length = required_integer(object, "length", i64::from(i32::MIN), i64::from(i32::MAX))?;
    let type_name = required_string(object, "type")?;
    if type_name.is_empty() {
        return Err("Type is not specified".into());
    }
    let kind = KNOWN_ENTITY_TYPES.iter().copied().find(|known| *known == type_name).ok_or("Unsupported type specified")?;
    let argument = match kind {
        "text_link" => Argument::Url(required_string(object, "url")?),
        "pre" => Argument::Language(optional_string(object, "language")?),
        "text_mention" => {
            let user = field(object, "user").ok_or("Can't find field \"user\"")?;
            let user_object = user.as_object().ok_or("Field \"user\" must be of type Object")?;
            let id = required_integer(user_object, "id", i64::MIN, i64::MAX)?;
            Argument::User(user.clone(), id)
        }
        "custom_emoji" => Argument::CustomEmoji(required_integer(object, "custom_emoji_id", i64::MIN, i64::MAX)?),
        _ => Argument::None,
    };
    Ok(SuppliedEntity { kind, offset, length, argument })
}

/// TDLib's checks of entity arguments: link validity, known user, custom emoji identifier.
fn validate_argument(mut entity: SuppliedEntity) -> Result<SuppliedEntity, String> {
    match &entity.argument {
        Argument::Url(url) => {
            if let Some(user_id) = link_user_id(url) {
                entity.kind = "text_mention";
                entity.argument = Argument::User(mention_user(user_id), user_id);
            } else {
                let normalized = check_link(url).map_err(|reason| format!("entity URL '{url}' is invalid: {reason}"))?;
                entity.argument = Argument::Url(normalized);
            }
        }
        Argument::User(_, id) if !is_valid_user_id(*id) => return Err("user not found".into()),
        Argument::CustomEmoji(0) => return Err("invalid custom emoji identifier specified".into()),
        Argument::Language(language) if language.is_empty() => entity.argument = Argument::None,
        _ => {}
    }
    Ok(entity)
}

fn check_bounds(entity: &SuppliedEntity) -> Result<(), String> {
    if !(0..=MAX_ENTITY_BOUND).contains(&entity.offset) {
        return Err(format!("receive an entity with incorrect offset {}", entity.offset));
    }
    if !(0..=MAX_ENTITY_BOUND).contains(&entity.length) {
        return Err(format!("receive an entity with incorrect length {}", entity.length));
    }
    Ok(())
}

fn check_range(text: &str, entity: &Entity) -> Result<(), String> {
    let text_length = utf16_len(text);
    let (offset, end) = (entity.offset, entity.offset + entity.length);
    if offset > text_length {
        return Err(format!("entity begins after the end of the text at UTF-16 offset {offset}"));
    }
    if let Some(byte) = byte_after_split_surrogate(text, offset) {
        return Err(format!("entity begins in a middle of a UTF-16 symbol at byte offset {byte}"));
    }
    if end > text_length {
        return Err(format!("entity beginning at UTF-16 offset {offset} ends after the end of the text at UTF-16 offset {end}"));
    }
    if let Some(byte) = byte_after_split_surrogate(text, end) {
        return Err(format!("entity beginning at UTF-16 offset {offset} ends in a middle of a UTF-16 symbol at byte offset {byte}"));
    }
    Ok(())
}

/// If a UTF-16 position falls between the two halves of a surrogate pair, the byte offset just
/// past that character (where TDLib notices and reports it).
fn byte_after_split_surrogate(text: &str, utf16_position: usize) -> Option<usize> {
    let mut utf16 = 0;
    for (byte, ch) in text.char_indices() {
        if utf16 >= utf16_position {
            return None;
        }
        utf16 += ch.len_utf16();
        if utf16 > utf16_position {
            return Some(byte + ch.len_utf8());
        }
    }
    None
}

/// A present, non-null field.
fn field<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).filter(|value| !value.is_null())
}

/// TDLib's JSON accepts integers both as numbers and as strings holding one.
fn required_integer(object: &Map<String, Value>, name: &str, min: i64, max: i64) -> Result<i64, String> {
    let value = field(object, name).ok_or_else(|| format!("Can't find field \"{name}\""))?;
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => parse_strict_i64(text),
        _ => return Err(format!("Field \"{name}\" must be a Number")),
    };
    parsed.filter(|n| (min..=max).contains(n)).ok_or_else(|| format!("Field \"{name}\" must be a valid Number"))
}

fn required_string(object: &Map<String, Value>, name: &str) -> Result<String, String> {
    match field(object, name) {
        None => Err(format!("Can't find field \"{name}\"")),
        Some(value) => string_value(value, name),
    }
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Result<String, String> {
    field(object, name).map_or(Ok(String::new()), |value| string_value(value, name))
}

fn string_value(value: &Value, name: &str) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        _ => Err(format!("Field \"{name}\" must be of type String")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> (String, Vec<Value>) {
        match parse_html(input) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{input:?} failed to parse: {e}"),
        }
    }

    fn entities(input: &str) -> Vec<Value> {
        parse(input).1
    }

    fn error(input: &str) -> String {
        match parse_html(input) {
            Ok(parsed) => panic!("{input:?} parsed as {parsed:?}"),
            Err(e) => e,
        }
    }

    fn entity(kind: &str, offset: usize, length: usize) -> Value {
        json!({ "type": kind, "offset": offset, "length": length })
    }

    fn entity_with(kind: &str, offset: usize, length: usize, key: &str, value: Value) -> Value {
        let mut e = entity(kind, offset, length);
        e[key] = value;
        e
    }

    // --- text and tags ---

    #[test]
    fn plain_text_is_copied_unchanged() {
        assert_eq!(parse("hello\nworld\r\n\ttab"), ("hello\nworld\r\n\ttab".to_string(), vec![]));
        assert_eq!(parse(""), (String::new(), vec![]));
    }

    #[test]
    fn bold_and_strong_are_bold() {
        assert_eq!(parse("a <b>bold</b>"), ("a bold".to_string(), vec![entity("bold", 2, 4)]));
        assert_eq!(entities("<strong>x</strong>"), vec![entity("bold", 0, 1)]);
    }

    #[test]
    fn italic_and_em_are_italic() {
        assert_eq!(entities("<i>x</i>"), vec![entity("italic", 0, 1)]);
        assert_eq!(entities("<em>xy</em>"), vec![entity("italic", 0, 2)]);
    }

    #[test]
    fn underline_and_ins_are_underline() {
        assert_eq!(entities("<u>x</u>"), vec![entity("underline", 0, 1)]);
        assert_eq!(entities("<ins>x</ins>"), vec![entity("underline", 0, 1)]);
    }

    #[test]
    fn s_strike_and_del_are_strikethrough() {
        for tag in ["s", "strike", "del"] {
            assert_eq!(entities(&format!("<{tag}>x</{tag}>")), vec![entity("strikethrough", 0, 1)], "{tag}");
        }
    }

    #[test]
    fn span_tg_spoiler_and_tg_spoiler_tag_are_spoiler() {
        assert_eq!(entities(r#"<span class="tg-spoiler">x</span>"#), vec![entity("spoiler", 0, 1)]);
        assert_eq!(entities("<span class = tg-spoiler>x</span>"), vec![entity("spoiler", 0, 1)]);
        assert_eq!(entities("<tg-spoiler>x</tg-spoiler>"), vec![entity("spoiler", 0, 1)]);
    }

    #[test]
    fn span_without_spoiler_class_is_rejected() {
        assert_eq!(error("ab<span>x</span>"), r#"Tag "span" must have class "tg-spoiler" at byte offset 2"#);
        assert_eq!(error(r#"<span class="spoiler">x</span>"#), r#"Tag "span" must have class "tg-spoiler" at byte offset 0"#);
        // quoted values keep their case, so this class is not "tg-…"
        assert_eq!(error(r#"<span class="TG-SPOILER">x</span>"#), r#"Tag "span" must have class "tg-spoiler" at byte offset 0"#);
    }

    #[test]
    fn code_tag_is_code() {
        assert_eq!(parse("run <code>ls -l</code>"), ("run ls -l".to_string(), vec![entity("code", 4, 5)]));
    }

    #[test]
    fn code_language_outside_pre_is_dropped() {
        assert_eq!(entities(r#"<code class="language-rust">x</code>"#), vec![entity("code", 0, 1)]);
    }

    #[test]
    fn pre_tag_is_pre_without_language() {
        assert_eq!(entities("<pre>fn main() {}</pre>"), vec![entity("pre", 0, 12)]);
    }

    #[test]
    fn pre_with_code_language_is_one_entity() {
        let (text, found) = parse("<pre><code class=\"language-rust\">let x = 1;\n</code></pre>");
        assert_eq!(text, "let x = 1;\n");
        assert_eq!(found, vec![entity_with("pre", 0, 11, "language", json!("rust"))]);
    }

    #[test]
    fn code_with_language_around_pre_is_one_entity() {
        assert_eq!(
            entities(r#"<code class="language-fift"><pre>x</pre></code>"#),
            vec![entity_with("pre", 0, 1, "language", json!("fift"))]
        );
    }

    #[test]
    fn pre_with_plain_code_is_one_pre_entity() {
        assert_eq!(entities("<pre><code>x</code></pre>"), vec![entity("pre", 0, 1)]);
        assert_eq!(entities(r#"<pre><code class="language-">x</code></pre>"#), vec![entity("pre", 0, 1)]);
    }

    #[test]
    fn code_not_spanning_whole_pre_keeps_both_entities() {
        assert_eq!(entities(r#"<pre><code class="language-fift">x</code> </pre>"#), vec![entity("pre", 0, 2), entity("code", 0, 1)]);
    }

    #[test]
    fn blockquote_is_blockquote() {
        assert_eq!(entities("<blockquote>a\nb</blockquote>"), vec![entity("blockquote", 0, 3)]);
        assert_eq!(entities(r#"<blockquote cite="" other x>a</blockquote>"#), vec![entity("blockquote", 0, 1)]);
    }

    #[test]
    fn blockquote_expandable_is_expandable_blockquote() {
        for tag in ["<blockquote expandable>", "<blockquote   expandable   asd>", "<blockquote expandable=false>"] {
            assert_eq!(entities(&format!("{tag}a</blockquote>")), vec![entity("expandable_blockquote", 0, 1)]);
        }
    }

    #[test]
    fn a_href_is_text_link_with_normalized_url() {
        assert_eq!(
            parse(r#"see <a href="https://example.com/path?q=1">here</a>"#),
            ("see here".to_string(), vec![entity_with("text_link", 4, 4, "url", json!("https://example.com/path?q=1"))])
        );
        assert_eq!(
            entities("<a href='http://example.com'>x</a>"),
            vec![entity_with("text_link", 0, 1, "url", json!("http://example.com/"))]
        );
        // unquoted values are lowercased; a missing scheme means http
        assert_eq!(entities("<a href=Telegram.ORG>x</a>"), vec![entity_with("text_link", 0, 1, "url", json!("http://telegram.org/"))]);
    }

    #[test]
    fn href_decodes_html_entities() {
        assert_eq!(
            entities(r#"<a href="https://e.com/?a=1&amp;b=2&lt;">x</a>"#),
            vec![entity_with("text_link", 0, 1, "url", json!("https://e.com/?a=1&b=2<"))]
        );
    }

    #[test]
    fn a_without_href_links_its_own_text() {
        assert_eq!(entities("<a>telegram.org</a>"), vec![entity_with("text_link", 0, 12, "url", json!("http://telegram.org/"))]);
    }

    #[test]
    fn invalid_link_is_dropped_silently() {
        assert_eq!(parse("<a href=\"not-a-url\">x</a>"), ("x".to_string(), vec![]));
        assert_eq!(entities("<a>telegram.org </a>"), Vec::<Value>::new());
        assert_eq!(entities(r#"<a href="ftp://example.com">x</a>"#), Vec::<Value>::new());
    }

    #[test]
    fn tg_user_link_is_text_mention() {
        assert_eq!(
            entities(r#"hi <a href="tg://user?id=123">Bob</a>"#),
            vec![entity_with("text_mention", 3, 3, "user", json!({"id": 123, "is_bot": false, "first_name": ""}))]
        );
    }

    #[test]
    fn tg_link_with_invalid_user_id_stays_a_link() {
        assert_eq!(entities(r#"<a href="tg://user?id=0">x</a>"#), vec![entity_with("text_link", 0, 1, "url", json!("tg://user?id=0"))]);
        assert_eq!(
            entities(r#"<a href="tg://resolve?domain=durov">x</a>"#),
            vec![entity_with("text_link", 0, 1, "url", json!("tg://resolve?domain=durov"))]
        );
    }

    #[test]
    fn tg_emoji_is_custom_emoji() {
        assert_eq!(
            parse(r#"<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>"#),
            ("👍".to_string(), vec![entity_with("custom_emoji", 0, 2, "custom_emoji_id", json!("5368324170671202286"))])
        );
    }

    #[test]
    fn tg_emoji_with_bad_identifier_is_rejected() {
        for id in ["", "abc", "0", "025", "9999999999999999999"] {
            assert_eq!(error(&format!(r#"<tg-emoji emoji-id="{id}">👍</tg-emoji>"#)), "Invalid custom emoji identifier specified", "{id}");
        }
        // an empty entity is dropped before its identifier is looked at
        assert_eq!(parse("<tg-emoji></tg-emoji>"), (String::new(), vec![]));
    }

    #[test]
    fn tag_names_are_case_insensitive() {
        assert_eq!(entities("<B>x</b><I>y</I><Pre>z</PRE>"), vec![entity("bold", 0, 1), entity("italic", 1, 1), entity("pre", 2, 1)]);
    }

    #[test]
    fn empty_end_tag_closes_the_innermost_tag() {
        assert_eq!(entities("<b>x<i>y</></>"), vec![entity("bold", 0, 2), entity("italic", 1, 1)]);
        assert_eq!(entities("<i>a</i   >"), vec![entity("italic", 0, 1)]);
    }

    #[test]
    fn attributes_accept_any_quoting_and_spacing() {
        assert_eq!(entities("<i aba = caba>a</i>"), vec![entity("italic", 0, 1)]);
        assert_eq!(entities("<i aba='x'>a</i>"), vec![entity("italic", 0, 1)]);
        assert_eq!(entities("<i    aba  =  \"&lt;&gt;&quot;\">a</i>"), vec![entity("italic", 0, 1)]);
        assert_eq!(entities("<i    aba  =  190azAz-.>a</i>"), vec![entity("italic", 0, 1)]);
    }

    // --- nesting, order, lengths ---

    #[test]
    fn nested_bold_in_italic_has_two_entities() {
        assert_eq!(parse("<i>a <b>b</b> c</i>"), ("a b c".to_string(), vec![entity("italic", 0, 5), entity("bold", 2, 1)]));
    }

    #[test]
    fn entities_sorted_by_offset_with_outer_first() {
        assert_eq!(entities("<u>x</u><b><i>yz</i>w</b>"), vec![entity("underline", 0, 1), entity("bold", 1, 3), entity("italic", 1, 2)]);
    }

    #[test]
    fn same_range_entities_follow_telegram_type_order() {
        assert_eq!(entities("<code><i><b> </b></i></code>"), vec![entity("code", 0, 1), entity("bold", 0, 1), entity("italic", 0, 1)]);
    }

    #[test]
    fn empty_entities_are_dropped() {
        assert_eq!(parse("a<b></b><i><u></u></i>b"), ("ab".to_string(), vec![]));
    }

    #[test]
    fn whitespace_only_entities_are_kept() {
        assert_eq!(entities("<i>\n</i>"), vec![entity("italic", 0, 1)]);
    }

    #[test]
    fn emoji_offsets_count_utf16_units() {
        assert_eq!(parse("😀 <b>😀x</b>"), ("😀 😀x".to_string(), vec![entity("bold", 3, 3)]));
    }

    #[test]
    fn cyrillic_counts_one_unit_per_letter() {
        assert_eq!(parse("Привет <i>мир</i>"), ("Привет мир".to_string(), vec![entity("italic", 7, 3)]));
    }

    #[test]
    fn decoded_entities_count_utf16_units() {
        assert_eq!(parse("&#x1F600;<b>&lt;</b>"), ("😀<".to_string(), vec![entity("bold", 2, 1)]));
    }

    #[test]
    fn utf16_len_counts_surrogate_pairs_twice() {
        assert_eq!(utf16_len(""), 0);
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("😀"), 2);
        assert_eq!(utf16_len("я😀é"), 4);
        assert_eq!(utf16_len("➡️"), 2);
    }

    // --- HTML entities ---

    #[test]
    fn named_and_numeric_entities_are_decoded() {
        assert_eq!(parse("&lt;&gt;&amp;&quot;").0, "<>&\"");
        assert_eq!(parse("&#65;&#x42;&#1071;").0, "ABЯ");
    }

    #[test]
    fn entity_semicolon_is_optional() {
        assert_eq!(parse("&lt&gt;&amp x &#65B").0, "<>& x AB");
    }

    #[test]
    fn unknown_entities_are_kept_literally() {
        let input = "&ge;&laquo;&raquo;&Or;&LT;&#12345678;&#0;&#x;&#;& &";
        assert_eq!(parse(input).0, input);
    }

    #[test]
    fn lone_surrogate_reference_is_rejected() {
        for input in ["&#57311;", "&#xDFDF;", "&#xDFDF", "a<b>&#xD800;</b>"] {
            assert_eq!(
                error(input),
                "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched \
                 surrogate code units",
                "{input}"
            );
        }
    }

    // --- errors ---

    #[test]
    fn unknown_tag_is_rejected_with_byte_offset() {
        assert_eq!(error("hello <foo>x</foo>"), r#"Unsupported start tag "foo" at byte offset 6"#);
        // byte offsets, not characters: 🏟 is 4 bytes, &lt; is 4 bytes
        assert_eq!(error("🏟 🏟&lt;<abac aba>"), r#"Unsupported start tag "abac" at byte offset 13"#);
        assert_eq!(error("<SCRIPT>"), r#"Unsupported start tag "script" at byte offset 0"#);
    }

    #[test]
    fn br_is_not_supported() {
        assert_eq!(error("a<br>b"), r#"Unsupported start tag "br" at byte offset 1"#);
        assert_eq!(error("a<br/>b"), r#"Unsupported start tag "br/" at byte offset 1"#);
    }

    #[test]
    fn unescaped_less_than_is_an_empty_tag_name() {
        assert_eq!(error("a < b"), r#"Unsupported start tag "" at byte offset 2"#);
        assert_eq!(error("<>"), r#"Unsupported start tag "" at byte offset 0"#);
    }

    #[test]
    fn start_tag_without_closing_bracket_is_rejected() {
        assert_eq!(error("🏟 🏟&lt;<abacaba"), "Unclosed start tag at byte offset 13");
        assert_eq!(error("text <b"), "Unclosed start tag at byte offset 5");
        assert_eq!(error("x<"), "Unclosed start tag at byte offset 1");
        assert_eq!(error("<a href"), r#"Unclosed start tag "a" at byte offset 0"#);
        assert_eq!(error("<i    aba  =  "), r#"Unclosed start tag "i" at byte offset 0"#);
        assert_eq!(error(r#"<a href="x"#), "Unclosed start tag at byte offset 0");
        assert_eq!(error("<i aba = '&lt;&gt;&quot;>"), "Unclosed start tag at byte offset 0");
    }

    #[test]
    fn end_tag_without_closing_bracket_is_rejected() {
        assert_eq!(error("🏟 🏟&lt;<i>a</i   "), "Unclosed end tag at byte offset 17");
    }

    #[test]
    fn mismatched_end_tag_is_rejected() {
        assert_eq!(error("<b><i>test</b></i>"), r#"Unmatched end tag at byte offset 10, expected "</i>", found "</b>""#);
        assert_eq!(error("🏟 🏟&lt;<i>a</em   >"), r#"Unmatched end tag at byte offset 17, expected "</i>", found "</em>""#);
    }

    #[test]
    fn end_tag_with_nothing_open_is_rejected() {
        assert_eq!(error("x</b>"), "Unexpected end tag at byte offset 1");
        assert_eq!(error("🏟 🏟&lt;<b></b></"), "Unexpected end tag at byte offset 20");
    }

    #[test]
    fn unclosed_tag_at_end_of_input_is_rejected() {
        assert_eq!(error("<b>unclosed"), r#"Can't find end tag corresponding to start tag "b""#);
        assert_eq!(error("<b><i>x</i>"), r#"Can't find end tag corresponding to start tag "b""#);
        assert_eq!(error("<i aba>"), r#"Can't find end tag corresponding to start tag "i""#);
    }

    #[test]
    fn empty_attribute_name_is_rejected() {
        assert_eq!(error("🏟 🏟&lt;<i   =aba>"), r#"Empty attribute name in the tag "i" at byte offset 13"#);
        assert_eq!(error("<b x/>y</b>"), r#"Empty attribute name in the tag "b" at byte offset 0"#);
    }

    #[test]
    fn bad_unquoted_value_is_rejected_at_its_offset() {
        assert_eq!(error("🏟 🏟&lt;<i    aba  =  190azAz-.,"), "Unexpected end of name token at byte offset 27");
        assert_eq!(error("<a href=x/>y</a>"), "Unexpected end of name token at byte offset 8");
    }

    #[test]
    fn null_byte_is_rejected() {
        assert_eq!(error("a\0b"), "Text must not contain null bytes");
    }

    #[test]
    fn first_error_in_input_order_wins() {
        assert_eq!(error("<b>&#xD800;</i>"), r#"Unmatched end tag at byte offset 11, expected "</b>", found "</i>""#);
    }

    // --- never panic ---

    /// Deterministic generator, so a failure reproduces.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as usize
        }

        fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
            items[self.next() % items.len()]
        }
    }

    const FUZZ_PIECES: &[&str] = &[
        "<",
        ">",
        "/",
        "&",
        ";",
        "#",
        "x",
        "a",
        "b",
        "\"",
        "'",
        "=",
        " ",
        "\n",
        "\t",
        "😀",
        "я",
        "é",
        "➡️",
        "<b>",
        "</b>",
        "<i>",
        "</i>",
        "</>",
        "<pre>",
        "</pre>",
        "<code class=\"language-rs\">",
        "</code>",
        "<a href=",
        "<a href=\"https://t.me/x\">",
        "</a>",
        "<tg-emoji emoji-id=\"5\">",
        "</tg-emoji>",
        "<span class=\"tg-spoiler\">",
        "</span>",
        "<blockquote expandable>",
        "</blockquote>",
        "&lt;",
        "&amp",
        "&#x1F600;",
        "&#55357;",
        "&#1",
        "tg://user?id=7",
        "<a>",
        "example.com",
        "\0",
    ];

    fn fuzz_input(rng: &mut Lcg) -> String {
        let pieces = rng.next() % 24;
        (0..pieces)
            .map(|_| {
                if rng.next().is_multiple_of(5) {
                    // an arbitrary character, including controls and the rest of Unicode
                    char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('?').to_string()
                } else {
                    rng.pick(FUZZ_PIECES).to_string()
                }
            })
            .collect()
    }

    #[test]
    fn random_input_never_panics_and_yields_consistent_entities() {
        let mut rng = Lcg(0x5eed);
        let mut parsed = 0;
        for _ in 0..5000 {
            let input = fuzz_input(&mut rng);
            let Ok((text, found)) = parse_html(&input) else {
                continue;
            };
            parsed += 1;
            let text_length = utf16_len(&text);
            let mut previous = 0;
            for e in &found {
                let offset = e["offset"].as_u64().unwrap_or(u64::MAX) as usize;
                let length = e["length"].as_u64().unwrap_or(0) as usize;
                assert!(length > 0 && offset + length <= text_length, "{input:?} gave {e} for {text:?}");
                assert!(offset >= previous, "{input:?} gave unsorted {found:?}");
                previous = offset;
            }
            // what the parser produces, the entity checker accepts unchanged
            assert_eq!(check_entities(&text, &found).as_ref(), Ok(&found), "{input:?}");
        }
        assert!(parsed > 100, "only {parsed} inputs parsed; the generator is too hostile");
    }

    #[test]
    fn random_entities_never_panic() {
        let mut rng = Lcg(42);
        let kinds = ["bold", "pre", "text_link", "text_mention", "custom_emoji", "nope", ""];
        let values = [json!(-1), json!(0), json!(1), json!(3), json!("2"), json!(1.5), json!(null), json!({})];
        for _ in 0..3000 {
            let text = fuzz_input(&mut rng).replace('\0', "");
            let supplied = json!({
                "type": rng.pick(&kinds),
                "offset": values[rng.next() % values.len()],
                "length": values[rng.next() % values.len()],
                "url": rng.pick(FUZZ_PIECES),
                "user": values[rng.next() % values.len()],
                "custom_emoji_id": values[rng.next() % values.len()],
            });
            let _ = check_entities(&text, &[supplied]);
        }
    }

    // --- check_entities ---

    fn check(text: &str, supplied: Value) -> Result<Vec<Value>, String> {
        match supplied {
            Value::Array(items) => check_entities(text, &items),
            other => panic!("expected an array, got {other}"),
        }
    }

    #[test]
    fn check_entities_accepts_and_sorts_valid_entities() {
        let found = check(
            "hello world",
            json!([
                {"type": "italic", "offset": 6, "length": 5},
                {"type": "bold", "offset": 0, "length": 5, "extra": true},
                {"type": "underline", "offset": 0, "length": 11},
            ]),
        );
        assert_eq!(found, Ok(vec![entity("underline", 0, 11), entity("bold", 0, 5), entity("italic", 6, 5)]));
    }

    #[test]
    fn check_entities_rejects_entity_past_end() {
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": 0, "length": 100}])),
            Err("entity beginning at UTF-16 offset 0 ends after the end of the text at UTF-16 offset 100".into())
        );
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": 100, "length": 1}])),
            Err("entity begins after the end of the text at UTF-16 offset 100".into())
        );
    }

    #[test]
    fn check_entities_measures_text_in_utf16_units() {
        assert_eq!(check("😀", json!([{"type": "bold", "offset": 0, "length": 2}])), Ok(vec![entity("bold", 0, 2)]));
        assert_eq!(
            check("😀", json!([{"type": "bold", "offset": 1, "length": 1}])),
            Err("entity begins in a middle of a UTF-16 symbol at byte offset 4".into())
        );
        assert_eq!(
            check("😀", json!([{"type": "bold", "offset": 0, "length": 1}])),
            Err("entity beginning at UTF-16 offset 0 ends in a middle of a UTF-16 symbol at byte offset 4".into())
        );
    }

    #[test]
    fn check_entities_rejects_negative_offset_and_length() {
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": -1, "length": 1}])),
            Err("receive an entity with incorrect offset -1".into())
        );
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": 0, "length": -1}])),
            Err("receive an entity with incorrect length -1".into())
        );
    }

    #[test]
    fn check_entities_drops_zero_length_entities() {
        assert_eq!(check("hello", json!([{"type": "bold", "offset": 9, "length": 0}])), Ok(vec![]));
    }

    #[test]
    fn check_entities_reads_numbers_given_as_strings() {
        assert_eq!(check("hello", json!([{"type": "bold", "offset": "1", "length": "2"}])), Ok(vec![entity("bold", 1, 2)]));
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": 1.5, "length": 2}])),
            Err("can't parse MessageEntity: Field \"offset\" must be a valid Number".into())
        );
        assert_eq!(
            check("hello", json!([{"type": "bold", "offset": true, "length": 2}])),
            Err("can't parse MessageEntity: Field \"offset\" must be a Number".into())
        );
    }

    #[test]
    fn check_entities_rejects_malformed_entities() {
        let cases = [
            (json!(["bold"]), "can't parse MessageEntity: expected an Object"),
            (json!([{"offset": 0, "length": 1}]), "can't parse MessageEntity: Can't find field \"type\""),
            (json!([{"type": "bold", "length": 1}]), "can't parse MessageEntity: Can't find field \"offset\""),
            (json!([{"type": "bold", "offset": 0}]), "can't parse MessageEntity: Can't find field \"length\""),
            (json!([{"type": "", "offset": 0, "length": 1}]), "can't parse MessageEntity: Type is not specified"),
            (json!([{"type": "blink", "offset": 0, "length": 1}]), "can't parse MessageEntity: Unsupported type specified"),
            (json!([{"type": ["bold"], "offset": 0, "length": 1}]), "can't parse MessageEntity: Field \"type\" must be of type String"),
        ];
        for (supplied, expected) in cases {
            assert_eq!(check("hello", supplied.clone()), Err(expected.to_string()), "{supplied}");
        }
    }

    #[test]
    fn check_entities_text_link_needs_a_valid_url() {
        assert_eq!(
            check("click", json!([{"type": "text_link", "offset": 0, "length": 5}])),
            Err("can't parse MessageEntity: Can't find field \"url\"".into())
        );
        assert_eq!(
            check("click", json!([{"type": "text_link", "offset": 0, "length": 5, "url": "not-a-url"}])),
            Err("entity URL 'not-a-url' is invalid: Wrong HTTP URL".into())
        );
        assert_eq!(
            check("click", json!([{"type": "text_link", "offset": 0, "length": 5, "url": ""}])),
            Err("entity URL '' is invalid: URL host is empty".into())
        );
        assert_eq!(
            check("click", json!([{"type": "text_link", "offset": 0, "length": 5, "url": "ftp://example.com"}])),
            Err("entity URL 'ftp://example.com' is invalid: Unsupported URL protocol".into())
        );
    }

    #[test]
    fn check_entities_normalizes_text_link_url() {
        assert_eq!(
            check("click", json!([{"type": "text_link", "offset": 0, "length": 5, "url": "HTTPS://Example.com:8443?x=Y"}])),
            Ok(vec![entity_with("text_link", 0, 5, "url", json!("https://example.com:8443/?x=Y"))])
        );
    }

    #[test]
    fn check_entities_turns_tg_user_link_into_text_mention() {
        assert_eq!(
            check("Bob", json!([{"type": "text_link", "offset": 0, "length": 3, "url": "tg://user?id=42"}])),
            Ok(vec![entity_with("text_mention", 0, 3, "user", json!({"id": 42, "is_bot": false, "first_name": ""}))])
        );
    }

    #[test]
    fn check_entities_pre_language_is_optional() {
        assert_eq!(
            check("code", json!([{"type": "pre", "offset": 0, "length": 4, "language": "python"}])),
            Ok(vec![entity_with("pre", 0, 4, "language", json!("python"))])
        );
        assert_eq!(check("code", json!([{"type": "pre", "offset": 0, "length": 4, "language": ""}])), Ok(vec![entity("pre", 0, 4)]));
        assert_eq!(check("code", json!([{"type": "pre", "offset": 0, "length": 4}])), Ok(vec![entity("pre", 0, 4)]));
    }

    #[test]
    fn check_entities_text_mention_needs_a_user_object() {
        let user = json!({"id": 7, "is_bot": false, "first_name": "Ann"});
        assert_eq!(
            check("Ann", json!([{"type": "text_mention", "offset": 0, "length": 3, "user": user}])),
            Ok(vec![entity_with("text_mention", 0, 3, "user", user.clone())])
        );
        assert_eq!(
            check("Ann", json!([{"type": "text_mention", "offset": 0, "length": 3}])),
            Err("can't parse MessageEntity: Can't find field \"user\"".into())
        );
        assert_eq!(
            check("Ann", json!([{"type": "text_mention", "offset": 0, "length": 3, "user": 7}])),
            Err("can't parse MessageEntity: Field \"user\" must be of type Object".into())
        );
        assert_eq!(
            check("Ann", json!([{"type": "text_mention", "offset": 0, "length": 3, "user": {"id": 0}}])),
            Err("user not found".into())
        );
    }

    #[test]
    fn check_entities_custom_emoji_needs_a_numeric_identifier() {
        assert_eq!(
            check("👍", json!([{"type": "custom_emoji", "offset": 0, "length": 2, "custom_emoji_id": "5368324170671202286"}])),
            Ok(vec![entity_with("custom_emoji", 0, 2, "custom_emoji_id", json!("5368324170671202286"))])
        );
        assert_eq!(
            check("👍", json!([{"type": "custom_emoji", "offset": 0, "length": 2}])),
            Err("can't parse MessageEntity: Can't find field \"custom_emoji_id\"".into())
        );
        assert_eq!(
            check("👍", json!([{"type": "custom_emoji", "offset": 0, "length": 2, "custom_emoji_id": "9999999999999999999"}])),
            Err("can't parse MessageEntity: Field \"custom_emoji_id\" must be a valid Number".into())
        );
        assert_eq!(
            check("👍", json!([{"type": "custom_emoji", "offset": 0, "length": 2, "custom_emoji_id": 0}])),
            Err("invalid custom emoji identifier specified".into())
        );
    }

    #[test]
    fn check_entities_keeps_types_telegram_detects_itself() {
        assert_eq!(check("see t.me", json!([{"type": "url", "offset": 4, "length": 4}])), Ok(vec![entity("url", 4, 4)]));
    }
}
