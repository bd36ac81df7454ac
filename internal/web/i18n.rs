//! The pages' and the widget's languages: English, Traditional Chinese (`zh-Hant`, as used in
//! Taiwan and Hong Kong; Taiwan's 上傳 rather than Hong Kong's 上載, which Hong Kong readers
//! also know) and Simplified Chinese (`zh-Hans`).
//!
//! Every string lives in `i18n/{lang}.json`, one section per page. The server fills a page's
//! `{{key}}` placeholders (HTML-escaped) and puts the page's whole section into a JSON data
//! block that its script reads, so a page never builds text from HTML strings. API errors
//! stay English; the pages show the translation of their `reason` code instead.

use std::{collections::BTreeMap, sync::LazyLock};

/// A language the pages speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhHant,
    ZhHans,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::ZhHant, Lang::ZhHans];

    /// The BCP 47 tag, as in `<html lang>` and `Content-Language`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHant => "zh-Hant",
            Lang::ZhHans => "zh-Hans",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The language a single language tag asks for, if it is one of ours.
    fn of_tag(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        let mut parts = tag.split(['-', '_']);
        match parts.next()? {
            "en" => Some(Lang::En),
            "zh" => {
                let rest: Vec<&str> = parts.collect();
                if rest.contains(&"hant") {
                    return Some(Lang::ZhHant);
                }
                if rest.contains(&"hans") {
                    return Some(Lang::ZhHans);
                }
                match rest.first().copied() {
                    Some("tw" | "hk" | "mo") => Some(Lang::ZhHant),
                    None | Some("cn" | "sg") => Some(Lang::ZhHans),
                    // Another region of Chinese: the script is a guess; try the next tag.
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }
}

/// The page language for an `Accept-Language` header: the tags by descending q-value (ties
/// in the order given; `q=0` means "not this"), the first one we speak; else English.
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::En;
    };
    let mut ranges: Vec<(u16, usize, &str)> = header
        .split(',')
        .take(32)
        .enumerate()
        .filter_map(|(n, item)| {
            let mut fields = item.split(';');
            let tag = fields.next()?.trim();
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q=").or(f.trim().strip_prefix("Q=")))
                .map_or(Some(1000), parse_q)?;
            (q > 0 && !tag.is_empty()).then_some((q, n, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges
        .into_iter()
        .find_map(|(_, _, tag)| Lang::of_tag(tag))
        .unwrap_or(Lang::En)
}

/// A q-value as thousandths; `None` for a malformed one (the range is then ignored).
fn parse_q(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

/// The parts of the user interface that have strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Desktop,
    Mobile,
    Widget,
}

impl Page {
    pub const ALL: [Page; 3] = [Page::Desktop, Page::Mobile, Page::Widget];

    fn section(self) -> &'static str {
        match self {
            Page::Desktop => "desktop",
            Page::Mobile => "mobile",
            Page::Widget => "widget",
        }
    }
}

type Strings = BTreeMap<String, String>;
type Catalog = BTreeMap<String, Strings>;

const SOURCES: [&str; 3] = [
    include_str!("i18n/en.json"),
    include_str!("i18n/zh-Hant.json"),
    include_str!("i18n/zh-Hans.json"),
];

/// The three catalogs, parsed once. A file that does not parse is a build mistake the unit
/// tests catch; at run time it reads as empty, and the English fallback or the key shows.
static CATALOGS: LazyLock<[Catalog; 3]> =
    LazyLock::new(|| SOURCES.map(|text| serde_json::from_str(text).unwrap_or_default()));

/// The strings of one page in one language.
pub fn strings(lang: Lang, page: Page) -> &'static Strings {
    static EMPTY: Strings = BTreeMap::new();
    CATALOGS[lang.index()].get(page.section()).unwrap_or(&EMPTY)
}

/// One string, falling back to English, then to the key itself.
pub fn text(lang: Lang, page: Page, key: &str) -> &'static str {
    if let Some(v) = strings(lang, page).get(key) {
        return v;
    }
    match strings(Lang::En, page).get(key) {
        Some(v) => v,
        None => {
            tracing::warn!(key, lang = lang.tag(), "missing string");
            ""
        }
    }
}

/// JSON of a string table that is safe inside `<script type="application/json">` and inside
/// a JavaScript module: no `<`, `>` or `&` that could end the element or start a comment.
fn script_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills a template: `{{lang}}` → the tag, `{{strings}}` → the page's table as JSON, any
/// other `{{key}}` → that string, HTML-escaped.
pub fn render(template: &str, lang: Lang, page: Page) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match &after[..end] {
            "lang" => out.push_str(lang.tag()),
            "strings" => out.push_str(&script_json(strings(lang, page))),
            key => out.push_str(&escape_html(text(lang, page, key))),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The widget's tables for every language, keyed by tag, as a JavaScript object literal.
pub fn widget_strings_js() -> String {
    let all: BTreeMap<&str, &Strings> = Lang::ALL
        .iter()
        .map(|&lang| (lang.tag(), strings(lang, Page::Widget)))
        .collect();
    script_json(&all)
}

/// The placeholders of a template (`{{key}}`), for the tests.
#[cfg(test)]
fn placeholders(template: &str) -> Vec<&str> {
    template
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}").map(|(key, _)| key))
        .filter(|key| !matches!(*key, "lang" | "strings"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_parses_and_has_every_key_of_every_other() {
        for (lang, source) in Lang::ALL.iter().zip(SOURCES) {
            let parsed: Catalog = serde_json::from_str(source).unwrap_or_else(|e| {
                panic!("{}.json does not parse: {e}", lang.tag());
            });
            for page in Page::ALL {
                assert!(
                    parsed.contains_key(page.section()),
                    "{}: no section {}",
                    lang.tag(),
                    page.section()
                );
            }
        }
        for page in Page::ALL {
            for a in Lang::ALL {
                for b in Lang::ALL {
                    for key in strings(a, page).keys() {
                        let value = strings(b, page).get(key);
                        assert!(
                            value.is_some_and(|v| !v.trim().is_empty()),
                            "{}.json, {}: the key {key:?} of {}.json is missing or empty",
                            b.tag(),
                            page.section(),
                            a.tag()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_placeholder_keeps_its_variables_in_every_language() {
        fn vars(text: &str) -> Vec<&str> {
            let mut v: Vec<&str> = text
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(k, _)| k))
                .collect();
            v.sort_unstable();
            v
        }
        for page in Page::ALL {
            for (key, english) in strings(Lang::En, page) {
                for lang in Lang::ALL {
                    assert_eq!(
                        vars(text(lang, page, key)),
                        vars(english),
                        "{} {}: {key}",
                        lang.tag(),
                        page.section()
                    );
                }
            }
        }
    }

    #[test]
    fn every_key_the_pages_use_exists() {
        let templates = [
            (Page::Desktop, super::super::DESKTOP_TEMPLATE),
            (Page::Mobile, super::super::MOBILE_TEMPLATE),
        ];
        for (page, html) in templates {
            for key in placeholders(html) {
                assert!(
                    strings(Lang::En, page).contains_key(key),
                    "{}: {{{{{key}}}}} has no string",
                    page.section()
                );
            }
        }
        let scripts = [
            (Page::Desktop, include_str!("desktop.js")),
            (Page::Mobile, include_str!("mobile.js")),
            (Page::Widget, include_str!("widget.js")),
            (Page::Widget, include_str!("widget_view.js")),
        ];
        for (page, js) in scripts {
            // Calls look like t('key'), t('key', {...}) or this._t('key').
            for (at, _) in js.match_indices("t('") {
                let before = js[..at].chars().next_back().unwrap_or(' ');
                let call = js[..at].ends_with("._")
                    || !(before.is_alphanumeric() || matches!(before, '_' | '.' | '$'));
                let Some((key, _)) = js[at + 3..].split_once('\'') else {
                    continue;
                };
                if !call {
                    continue;
                }
                if key.is_empty() || key.ends_with('_') {
                    continue; // a prefix such as 'reason_' + code, checked below
                }
                assert!(
                    strings(Lang::En, page).contains_key(key),
                    "{}: t('{key}') has no string",
                    page.section()
                );
            }
        }
    }

    #[test]
    fn accept_language_picks_by_q_value_and_region() {
        let cases = [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("fr-FR, de;q=0.5"), Lang::En),
            (Some("zh-TW"), Lang::ZhHant),
            (Some("zh-HK,zh;q=0.9,en;q=0.8"), Lang::ZhHant),
            (Some("zh-MO"), Lang::ZhHant),
            (Some("zh-Hant"), Lang::ZhHant),
            (Some("zh-Hant-HK"), Lang::ZhHant),
            (Some("zh"), Lang::ZhHans),
            (Some("zh-CN"), Lang::ZhHans),
            (Some("zh-SG"), Lang::ZhHans),
            (Some("zh-Hans-CN"), Lang::ZhHans),
            (Some("zh_TW"), Lang::ZhHant),
            (Some("en-US,en;q=0.9,zh-TW;q=0.8"), Lang::En),
            (Some("en;q=0.5, zh-TW;q=0.8"), Lang::ZhHant),
            (Some("zh-TW;q=0, zh-CN;q=0.1"), Lang::ZhHans),
            (Some("fr, zh-HK;q=0.3, en;q=0.2"), Lang::ZhHant),
            (Some("zh-TW;q=bogus, zh-CN;q=0.5"), Lang::ZhHans),
            (Some("*"), Lang::En),
            (Some("ZH-tw"), Lang::ZhHant),
        ];
        for (header, want) in cases {
            assert_eq!(negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn rendering_escapes_strings_and_fills_the_language() {
        let html = render(
            "<html lang=\"{{lang}}\"><title>{{title}}</title><script type=\"application/json\">{{strings}}</script>",
            Lang::ZhHant,
            Page::Desktop,
        );
        assert!(html.starts_with("<html lang=\"zh-Hant\"><title>用手機上傳相片</title>"));
        assert!(!html.contains("{{"));
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            script_json(&"</script><!--"),
            "\"\\u003c/script\\u003e\\u003c!--\""
        );
    }
}
