//! What the bot says, in English and Russian, from the resource files `texts/en.yaml` and
//! `texts/ru.yaml` (compiled in, so a pod needs no extra files). Texts are HTML.

use std::collections::HashMap;
use std::sync::OnceLock;

use botfleet_crds::bot_instance::Language;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The language for a user's Telegram `language_code`: the ones we have, else the bot's
    /// default. Belarusian and Ukrainian speakers mostly read Russian better than English.
    pub fn for_user(language_code: Option<&str>, default: &Language) -> Self {
        let code = language_code.unwrap_or("").to_ascii_lowercase();
        let primary = code.split(['-', '_']).next().unwrap_or("");
        match primary {
            "ru" | "be" | "uk" | "kk" => Lang::Ru,
            "en" => Lang::En,
            _ => match default {
                Language::Ru => Lang::Ru,
                _ => Lang::En,
            },
        }
    }
}

pub struct Texts {
    en: HashMap<String, String>,
    ru: HashMap<String, String>,
}

fn parse(name: &str, yaml: &str) -> HashMap<String, String> {
    // The files are compiled in and checked by the tests below: a broken file can't ship.
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("texts/{name}.yaml: {e}"))
}

impl Texts {
    pub fn get() -> &'static Texts {
        static TEXTS: OnceLock<Texts> = OnceLock::new();
        TEXTS.get_or_init(|| Texts { en: parse("en", include_str!("../texts/en.yaml")), ru: parse("ru", include_str!("../texts/ru.yaml")) })
    }

    /// The raw text of `key` (English if missing in the language; the key itself if missing
    /// everywhere, so a typo shows up in tests instead of sending nothing).
    pub fn raw(&self, lang: Lang, key: &str) -> String {
        let table = match lang {
            Lang::En => &self.en,
            Lang::Ru => &self.ru,
        };
        table.get(key).or_else(|| self.en.get(key)).cloned().unwrap_or_else(|| key.to_string())
    }

    /// `key` with its `{placeholders}` filled. Values are inserted as given: escape them with
    /// [`escape`] if they come from outside.
    pub fn fmt(&self, lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.raw(lang, key);
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    pub fn keys(&self, lang: Lang) -> Vec<String> {
        let table = match lang {
            Lang::En => &self.en,
            Lang::Ru => &self.ru,
        };
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// Escapes text for parse_mode=HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(s: &str) -> Vec<String> {
        let mut out: Vec<String> = s.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string())).collect();
        out.sort();
        out
    }

    #[test]
    fn english_and_russian_have_the_same_keys_and_placeholders() {
        let t = Texts::get();
        assert_eq!(t.keys(Lang::En), t.keys(Lang::Ru));
        for key in t.keys(Lang::En) {
            assert_eq!(placeholders(&t.raw(Lang::En, &key)), placeholders(&t.raw(Lang::Ru, &key)), "{key}");
        }
    }

    #[test]
    fn the_language_follows_the_user_then_the_bot() {
        assert_eq!(Lang::for_user(Some("ru"), &Language::En), Lang::Ru);
        assert_eq!(Lang::for_user(Some("en-GB"), &Language::Ru), Lang::En);
        assert_eq!(Lang::for_user(Some("de"), &Language::Ru), Lang::Ru);
        assert_eq!(Lang::for_user(None, &Language::En), Lang::En);
    }

    #[test]
    fn placeholders_are_filled() {
        let t = Texts::get();
        assert!(t.fmt(Lang::En, "age_too_young", &[("min_age", "18")]).contains("18 and older"));
        assert_eq!(escape("<b>&"), "&lt;b&gt;&amp;");
    }
}
