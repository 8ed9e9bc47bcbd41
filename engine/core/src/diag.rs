//! Diagnostics that point at a file, line and column, and say what to change.

use serde::Serialize;

/// One problem found in a definition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given to the checker (relative paths stay relative).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something specific to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// A finding to consider that does not fail the check.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl Diagnostic {
    pub fn new(file: &str, (line, column): (usize, usize), message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
            help: None,
            warning: false,
        }
    }

    /// Makes this a warning: reported, but not a failure.
    pub fn warning(mut self) -> Self {
        self.warning = true;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file,
            self.line,
            self.column,
            if self.warning { "warning" } else { "error" },
            self.message
        )?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Checks a definition file's schema header and parses its YAML into `T`,
/// pushing file:line diagnostics. `what` names the kind of file in messages
/// ("pack definition", "mapping"); `schema` is its JSON Schema file name.
pub fn parse_definition<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    what: &str,
    schema: &str,
    d: &mut Vec<Diagnostic>,
) -> Option<T> {
    if !text
        .lines()
        .next()
        .unwrap_or_default()
        .starts_with(crate::packs::loader::SCHEMA_HEADER_PREFIX)
    {
        d.push(
            Diagnostic::new(
                file,
                (1, 1),
                "the first line must name the JSON Schema for editors",
            )
            .help(format!(
                "start the file with `# yaml-language-server: $schema=../schemas/{schema}`"
            )),
        );
    }
    match serde_yaml::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let msg = e.to_string();
            // libyaml names where the construct it was reading began ("while
            // parsing a flow mapping at line 5 column 13"): often the real mistake.
            let opened = regex::Regex::new(
                r"^(.*?) at line \d+ column \d+, while parsing (.*?) at line (\d+) column (\d+)$",
            )
            .ok()
            .and_then(|re| {
                re.captures(&msg).map(|c| {
                    (
                        c[1].to_string(),
                        c[2].to_string(),
                        c[3].to_string(),
                        c[4].to_string(),
                    )
                })
            });
            let (msg, help) = match opened {
                Some((problem, what_opened, line, col)) => (
                    format!("{problem} while reading {what_opened} that starts at line {line} column {col}"),
                    format!("look at line {line} column {col}: close what opens there (a missing `}}`, `]` or quote is the usual cause)"),
                ),
                None => (
                    msg.rfind(" at line ")
                        .map_or(msg.clone(), |i| msg[..i].to_string()),
                    format!("compare with schemas/{schema}; `quarry schema` regenerates it"),
                ),
            };
            d.push(Diagnostic::new(file, pos, format!("invalid {what}: {msg}")).help(help));
            None
        }
    }
}

/// Names of operations, sources and parameters: lower case letters, digits and
/// underscores, starting with a letter, at most 63 characters.
pub fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Finds the line and column of a key path (`["parameters", "group_by", "default"]`)
/// in a block-style YAML document. Falls back to the deepest key found, then to 1:1.
pub fn yaml_key_position(text: &str, path: &[&str]) -> (usize, usize) {
    let mut best = (1, 1);
    let mut parent_indent: isize = -1;
    let mut start_line = 0;
    let lines: Vec<&str> = text.lines().collect();
    'outer: for key in path {
        for (i, line) in lines.iter().enumerate().skip(start_line) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = (line.len() - trimmed.len()) as isize;
            if i > start_line && indent <= parent_indent {
                break 'outer; // left the parent block
            }
            let bare = trimmed.trim_start_matches("- ");
            let matches = bare
                .strip_prefix(key)
                .map(|rest| rest.trim_start().starts_with(':'))
                .unwrap_or(false)
                || bare
                    .strip_prefix(&format!("\"{key}\""))
                    .map(|rest| rest.trim_start().starts_with(':'))
                    .unwrap_or(false);
            if matches && indent > parent_indent {
                best = (i + 1, (line.len() - bare.len()) + 1);
                parent_indent = indent;
                start_line = i + 1;
                continue 'outer;
            }
        }
        break;
    }
    best
}

/// Finds the first line and column where `needle` occurs as a whole word in `text`.
pub fn word_position(text: &str, needle: &str) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(pos) = line[from..].find(needle) {
            let start = from + pos;
            let end = start + needle.len();
            let before_ok = line[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let after_ok = line[end..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if before_ok && after_ok {
                return Some((i + 1, line[..start].chars().count() + 1));
            }
            from = end;
        }
    }
    None
}

/// Finds where a template variable is used: the first whole-word occurrence
/// inside a `{{ ... }}` or `{% ... %}` tag, falling back to anywhere in the text.
pub fn template_var_position(text: &str, name: &str) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(open) = line[from..].find(['{']).map(|p| p + from) {
            let tag = &line[open..];
            if tag.starts_with("{{") || tag.starts_with("{%") {
                let close = tag.find(['}']).map_or(line.len(), |c| open + c);
                let inner = &line[open..close];
                if let Some((_, col)) = word_position(inner, name) {
                    return Some((i + 1, line[..open].chars().count() + col));
                }
                from = close.max(open + 2).min(line.len());
            } else {
                from = open + 1;
            }
            if from >= line.len() {
                break;
            }
        }
    }
    word_position(text, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys() {
        let y = "# c\nname: x\nparameters:\n  a:\n    type: string\n  b:\n    type: integer\n    default: 3\ncost: light\n";
        assert_eq!(yaml_key_position(y, &["name"]), (2, 1));
        assert_eq!(yaml_key_position(y, &["parameters", "b"]), (6, 3));
        assert_eq!(
            yaml_key_position(y, &["parameters", "b", "default"]),
            (8, 5)
        );
        assert_eq!(
            yaml_key_position(y, &["parameters", "a", "default"]),
            (4, 3)
        );
        assert_eq!(yaml_key_position(y, &["cost"]), (9, 1));
    }

    #[test]
    fn finds_words() {
        let t = "select a\nfrom t where x_y = {{ y }}";
        assert_eq!(word_position(t, "y"), Some((2, 23)));
        assert_eq!(word_position(t, "zz"), None);
        let t = "WHERE industry = {{ industry }}";
        assert_eq!(template_var_position(t, "industry"), Some((1, 21)));
    }
}
