//! SQL scripts for `provider execute`: split into statements, their own transaction control
//! taken out (skyrep runs each script in one transaction), and table names mapped to a
//! subscriber's `--dest-table` names; and each database's record of the scripts run there
//! (`londiste.executed_scripts`).
//!
//! The lexer knows what PostgreSQL's does about where a statement ends and what is a name:
//! `--` and nested `/* */` comments, `'...'` and `E'...'` strings, `"..."` identifiers and
//! `$tag$...$tag$` bodies. It does not parse SQL beyond that.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, Result, bail};
use postgres::GenericClient;

use crate::base::names::TableName;

/// A lexical token: where it is in the text, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// An identifier or key word, folded to lower case as PostgreSQL does.
    Word(String),
    /// A `"quoted"` identifier, unescaped.
    Quoted(String),
    /// `.`
    Dot,
    /// `;` at the top level.
    End,
    /// Anything else that is not blank or a comment: strings, numbers, operators.
    Other,
}

/// A statement of a script: its text range (without the `;`) and its tokens.
#[derive(Debug)]
struct Statement {
    span: Range<usize>,
    tokens: Vec<(Range<usize>, Token)>,
}

/// A script split into statements.
#[derive(Debug)]
pub struct Script {
    text: String,
    statements: Vec<Statement>,
}

impl Script {
    /// Splits `text` into statements; an unterminated string, identifier, comment or
    /// `$tag$` body is an error naming its line.
    pub fn parse(text: &str) -> Result<Script> {
        let tokens = lex(text)?;
        let mut statements = Vec::new();
        let mut current: Vec<(Range<usize>, Token)> = Vec::new();
        let mut start = 0;
        for (span, token) in tokens {
            if token == Token::End {
                if !current.is_empty() {
                    statements.push(Statement {
                        span: start..span.start,
                        tokens: std::mem::take(&mut current),
                    });
                }
                start = span.end;
            } else {
                if current.is_empty() {
                    start = span.start;
                }
                current.push((span, token));
            }
        }
        if !current.is_empty() {
            let end = current.last().map(|(s, _)| s.end).unwrap_or(start);
            statements.push(Statement {
                span: start..end,
                tokens: current,
            });
        }
        Ok(Script {
            text: text.to_string(),
            statements,
        })
    }

    /// The script without a `BEGIN` (or `START TRANSACTION`) as its first statement and a
    /// `COMMIT` (or `END`) as its last, which skyrep's own transaction makes redundant. Any
    /// other transaction control is an error: the script must run as one transaction.
    pub fn without_transaction_control(mut self) -> Result<Script> {
        if self
            .statements
            .first()
            .is_some_and(|s| s.starts_with(&["begin"]))
            || self
                .statements
                .first()
                .is_some_and(|s| s.starts_with(&["start", "transaction"]))
        {
            self.statements.remove(0);
        }
        if self
            .statements
            .last()
            .is_some_and(|s| s.starts_with(&["commit"]) || s.starts_with(&["end"]))
        {
            self.statements.pop();
        }
        const CONTROL: &[&str] = &[
            "begin",
            "start",
            "commit",
            "end",
            "rollback",
            "abort",
            "savepoint",
            "release",
        ];
        for statement in &self.statements {
            // PREPARE alone makes a prepared statement; PREPARE TRANSACTION is control.
            let control = CONTROL
                .iter()
                .chain(&["prepare transaction"])
                .find(|w| statement.starts_with(&w.split(' ').collect::<Vec<_>>()));
            if let Some(word) = control {
                bail!(
                    "line {}: {} is not allowed in a script: skyrep runs the whole script as one transaction",
                    line_of(&self.text, statement.span.start),
                    word.to_uppercase()
                );
            }
        }
        Ok(self)
    }

    /// How many statements the script has.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// True if the script has no statements.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The script's statements, each ended by `;` and a newline.
    pub fn sql(&self) -> String {
        self.render(&HashMap::new()).0
    }

    /// The script with every schema-qualified name of a table in `dests` (keyed by the
    /// provider's `schema.table`) replaced by its destination's quoted name; also returns
    /// the replacements made, as `(from, to)`. Bare names are left alone: which table they
    /// mean depends on the search path.
    pub fn mapped(&self, dests: &HashMap<String, TableName>) -> (String, Vec<(String, String)>) {
        self.render(dests)
    }

    fn render(&self, dests: &HashMap<String, TableName>) -> (String, Vec<(String, String)>) {
        let mut out = String::new();
        let mut replaced = Vec::new();
        for statement in &self.statements {
            let mut at = statement.span.start;
            let tokens = &statement.tokens;
            let mut i = 0;
            while i < tokens.len() {
                // `schema . name`, not itself after a dot (`x.schema.name` names something else).
                let after_dot = i > 0 && tokens[i - 1].1 == Token::Dot;
                let pair = match &tokens[i..] {
                    [(first, schema), (_, Token::Dot), (last, name), ..] if !after_dot => (|| {
                        let table = TableName::new(ident(schema)?, ident(name)?).ok()?;
                        let dest = dests.get(&table.qualified())?;
                        Some((first.start..last.end, table, dest))
                    })(
                    ),
                    _ => None,
                };
                match pair {
                    Some((span, table, dest)) => {
                        out.push_str(&self.text[at..span.start]);
                        out.push_str(&dest.quoted());
                        replaced.push((table.qualified(), dest.qualified()));
                        at = span.end;
                        i += 3;
                    }
                    None => i += 1,
                }
            }
            out.push_str(&self.text[at..statement.span.end]);
            out.push_str(";\n");
        }
        (out, replaced)
    }
}

impl Statement {
    /// True if the statement's first words are `words` (lower case).
    fn starts_with(&self, words: &[&str]) -> bool {
        words.len() <= self.tokens.len()
            && words
                .iter()
                .zip(&self.tokens)
                .all(|(w, (_, t))| matches!(t, Token::Word(x) if x == w))
    }
}

/// The name a token stands for, if it is a name.
fn ident(token: &Token) -> Option<&str> {
    match token {
        Token::Word(w) | Token::Quoted(w) => Some(w),
        _ => None,
    }
}

/// Fails unless `text` is at most one statement or expression: no `;` outside its strings,
/// names and comments, and none of those left open (for `--copy-condition`, which skyrep
/// puts into its own statements).
pub fn check_single(text: &str) -> Result<()> {
    if lex(text)?.iter().any(|(_, t)| *t == Token::End) {
        bail!("`;` is not allowed: one SQL expression only");
    }
    Ok(())
}

/// The line number (from 1) of byte `at` of `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// The tokens of `text`, blanks and comments left out.
fn lex(text: &str) -> Result<Vec<(Range<usize>, Token)>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let unterminated = |what: &str, at: usize| -> anyhow::Error {
        anyhow::anyhow!("line {}: {what} is not terminated", line_of(text, at))
    };
    while i < bytes.len() {
        let c = text[i..].chars().next().expect("i is on a char boundary");
        let start = i;
        match c {
            c if c.is_whitespace() => i += c.len_utf8(),
            '-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            '/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                loop {
                    if i + 1 >= bytes.len() {
                        return Err(unterminated("a /* comment", start));
                    }
                    match &bytes[i..i + 2] {
                        b"/*" => {
                            depth += 1;
                            i += 2;
                        }
                        b"*/" => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            '\'' => {
                i = string_end(bytes, i + 1, false)
                    .ok_or_else(|| unterminated("a string", start))?;
                tokens.push((start..i, Token::Other));
            }
            'e' | 'E' if bytes.get(i + 1) == Some(&b'\'') => {
                i = string_end(bytes, i + 2, true)
                    .ok_or_else(|| unterminated("a string", start))?;
                tokens.push((start..i, Token::Other));
            }
            '"' => {
                let mut name = String::new();
                i += 1;
                loop {
                    let Some(n) = text[i..].find('"') else {
                        return Err(unterminated("a quoted name", start));
                    };
                    name.push_str(&text[i..i + n]);
                    i += n + 1;
                    if bytes.get(i) == Some(&b'"') {
                        name.push('"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push((start..i, Token::Quoted(name)));
            }
            '$' => {
                // $tag$ ... $tag$ (tag empty or a name); `$1` is a parameter.
                let tag_end = text[i + 1..]
                    .char_indices()
                    .find(|(_, c)| !is_ident_char(*c) || *c == '$')
                    .map(|(n, _)| i + 1 + n);
                let starts_body = tag_end.is_some_and(|e| {
                    bytes[e] == b'$' && !text[i + 1..e].starts_with(|c: char| c.is_ascii_digit())
                });
                if let (true, Some(e)) = (starts_body, tag_end) {
                    let tag = &text[i..=e];
                    let Some(n) = text[e + 1..].find(tag) else {
                        return Err(unterminated(&format!("a {tag} body"), start));
                    };
                    i = e + 1 + n + tag.len();
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                tokens.push((start..i, Token::Other));
            }
            ';' => {
                i += 1;
                tokens.push((start..i, Token::End));
            }
            '.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                tokens.push((start..i, Token::Dot));
            }
            c if is_ident_start(c) => {
                let n = text[i..]
                    .char_indices()
                    .find(|(_, c)| !is_ident_char(*c))
                    .map_or(text.len() - i, |(n, _)| n);
                i += n;
                tokens.push((start..i, Token::Word(text[start..i].to_lowercase())));
            }
            c => {
                i += c.len_utf8();
                tokens.push((start..i, Token::Other));
            }
        }
    }
    Ok(tokens)
}

/// The end of a string whose body starts at `i` (after the opening quote): `''` is a quote;
/// with `backslashes`, so is `\'`.
fn string_end(bytes: &[u8], mut i: usize, backslashes: bool) -> Option<usize> {
    loop {
        match bytes.get(i)? {
            b'\\' if backslashes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// What `londiste.executed_scripts` says about a script.
pub struct ScriptRecord {
    /// `done`, `skip` or `skipped`.
    pub status: String,
    /// md5 of the script as queued (none for `skip`).
    pub md5: Option<String>,
    /// When it was run, marked or skipped.
    pub at: String,
}

/// The record of the script `name` of `queue`, if any; `install` is the command that adds
/// the table where it is missing (`provider install` or `subscriber install`).
pub fn script_record(
    client: &mut impl GenericClient,
    queue: &str,
    name: &str,
    install: &str,
) -> Result<Option<ScriptRecord>> {
    Ok(client
        .query_opt(
            "select status, sql_md5, executed_at::text from londiste.executed_scripts \
             where queue_name = $1 and file_name = $2",
            &[&queue, &name],
        )
        .with_context(|| format!("reading londiste.executed_scripts (run `{install}` to upgrade)"))?
        .map(|r| ScriptRecord {
            status: r.get(0),
            md5: r.get(1),
            at: r.get(2),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(pairs: &[(&str, &str)]) -> HashMap<String, TableName> {
        pairs
            .iter()
            .map(|(from, to)| (from.to_string(), TableName::from_qualified(to).unwrap()))
            .collect()
    }

    #[test]
    fn splits_statements_at_top_level_semicolons_only() {
        let script = Script::parse(
            "alter table a add column c int; -- a comment; still a comment\n\
             insert into a values ('x;y', E'it\\'s;', $$;$$, $f$ ; $f$);\n\
             /* one /* nested; */ comment; */ create function f() returns int language sql as $body$select 1;$body$;\n\
             select \"semi;colon\" from a",
        )
        .unwrap();
        assert_eq!(script.len(), 4);
        let sql = script.sql();
        assert!(
            sql.starts_with("alter table a add column c int;\n"),
            "{sql}"
        );
        assert!(sql.ends_with("select \"semi;colon\" from a;\n"), "{sql}");
    }

    #[test]
    fn a_single_expression_has_no_semicolon_outside_strings() {
        check_single("region = 'eu;x' and \"a;b\" > 0 -- c;\n").unwrap();
        for bad in ["true); drop table t; --", "1;", "a = 'open"] {
            assert!(check_single(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unterminated_pieces_name_their_line() {
        for (text, what) in [
            ("select 1;\nselect 'open", "line 2: a string"),
            ("select \"open", "line 1: a quoted name"),
            ("select 1;\n\n/* open", "line 3: a /* comment"),
            ("select $x$ open", "line 1: a $x$ body"),
        ] {
            let err = Script::parse(text).unwrap_err().to_string();
            assert!(err.starts_with(what), "{text}: {err}");
        }
    }

    #[test]
    fn leading_begin_and_trailing_commit_are_dropped_other_control_refused() {
        let script = Script::parse("begin;\nalter table a add column c int;\nend;\n")
            .unwrap()
            .without_transaction_control()
            .unwrap();
        assert_eq!(script.sql(), "alter table a add column c int;\n");
        let script = Script::parse("START TRANSACTION; create table t (i int); COMMIT")
            .unwrap()
            .without_transaction_control()
            .unwrap();
        assert_eq!(script.sql(), "create table t (i int);\n");
        for (text, word) in [
            (
                "create table t (i int);\ncommit;\ncreate table u (i int);",
                "line 2: COMMIT",
            ),
            ("rollback", "line 1: ROLLBACK"),
            ("begin; savepoint s; commit;", "line 1: SAVEPOINT"),
            ("prepare transaction 'x'", "line 1: PREPARE TRANSACTION"),
        ] {
            let err = Script::parse(text)
                .unwrap()
                .without_transaction_control()
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(word), "{text}: {err}");
        }
        // A prepared statement is not transaction control; a DO body's END is inside $$.
        let script = Script::parse("prepare q as select 1; do $$ begin perform 1; end $$;")
            .unwrap()
            .without_transaction_control()
            .unwrap();
        assert_eq!(script.len(), 2);
    }

    #[test]
    fn qualified_names_of_mapped_tables_are_replaced() {
        let map = dests(&[
            ("digoal_01.user_info", "digoal_02.user_info1"),
            ("public.Odd Name", "other.odd"),
        ]);
        let script = Script::parse(
            "alter table digoal_01.user_info add column c1 int;\n\
             ALTER TABLE Digoal_01.\"user_info\" add column c2 int;\n\
             update public.\"Odd Name\" set digoal_01.user_info = 'digoal_01.user_info';\n\
             alter table user_info add column c3 int;\n\
             select x.digoal_01.user_info from digoal_01.user_infos",
        )
        .unwrap();
        let (sql, replaced) = script.mapped(&map);
        assert_eq!(
            sql,
            "alter table \"digoal_02\".\"user_info1\" add column c1 int;\n\
             ALTER TABLE \"digoal_02\".\"user_info1\" add column c2 int;\n\
             update \"other\".\"odd\" set \"digoal_02\".\"user_info1\" = 'digoal_01.user_info';\n\
             alter table user_info add column c3 int;\n\
             select x.digoal_01.user_info from digoal_01.user_infos;\n"
        );
        assert_eq!(replaced.len(), 4);
        assert_eq!(
            replaced[0],
            (
                "digoal_01.user_info".to_string(),
                "digoal_02.user_info1".to_string()
            )
        );
    }
}
