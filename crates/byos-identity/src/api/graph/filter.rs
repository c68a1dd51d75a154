//! The part of OData's `$filter` that clients send to find a service principal: the az CLI
//! (`servicePrincipalNames/any(c:c eq '<appId>')` for `--assignee`, `startswith(displayName,'x')`
//! for `az ad sp list --display-name`), and the lookups by `appId`, `id` or `displayName`, joined by
//! `and`. Anything else is refused with the reason, rather than answered as if it matched nothing.

use crate::principal::Principal;

/// One comparison of a filter.
#[derive(Debug, PartialEq, Eq)]
pub enum Clause {
    AppId(String),
    Id(String),
    DisplayName(String),
    DisplayNameStartsWith(String),
    /// `servicePrincipalNames/any(c:c eq 'v')`: byos's service principal names are the appId only.
    ServicePrincipalName(String),
}

/// A conjunction of clauses.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter(pub Vec<Clause>);

/// Why a filter was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not OData byos can read.
    #[error("Invalid filter clause: {0}")]
    Syntax(String),
    /// Well-formed, but asking for a property or function byos does not filter on.
    #[error("Unsupported query: {0}")]
    Unsupported(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Colon,
    Comma,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text)?;
        let mut cursor = Cursor { tokens: &tokens, at: 0 };
        let mut clauses = vec![cursor.clause()?];
        while let Some(token) = cursor.next() {
            match token {
                Token::Word(w) if w.eq_ignore_ascii_case("and") => clauses.push(cursor.clause()?),
                Token::Word(w) if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("not") => {
                    return Err(FilterError::Unsupported(format!("'{w}' (only 'and' joins clauses)")));
                }
                other => return Err(FilterError::Syntax(format!("unexpected {other:?} after a clause"))),
            }
        }
        Ok(Filter(clauses))
    }

    /// Whether `principal` satisfies every clause (string comparisons ignore case, as Entra's do).
    pub fn matches(&self, principal: &Principal) -> bool {
        let app_id = principal.client_id.to_string();
        self.0.iter().all(|clause| match clause {
            Clause::AppId(v) | Clause::ServicePrincipalName(v) => v.eq_ignore_ascii_case(&app_id),
            Clause::Id(v) => v.eq_ignore_ascii_case(&principal.object_id.to_string()),
            Clause::DisplayName(v) => v.eq_ignore_ascii_case(&principal.display_name),
            Clause::DisplayNameStartsWith(v) => {
                principal.display_name.get(..v.len()).is_some_and(|start| start.eq_ignore_ascii_case(v))
            }
        })
    }
}

struct Cursor<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.at);
        self.at += usize::from(token.is_some());
        token
    }

    fn expect(&mut self, wanted: &Token) -> Result<(), FilterError> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            other => Err(FilterError::Syntax(format!("expected {wanted:?}, found {other:?}"))),
        }
    }

    fn word(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w.clone()),
            other => Err(FilterError::Syntax(format!("expected a name, found {other:?}"))),
        }
    }

    fn text(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Token::Text(t)) => Ok(t.clone()),
            other => Err(FilterError::Syntax(format!("expected a quoted string, found {other:?}"))),
        }
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), FilterError> {
        let word = self.word()?;
        if word.eq_ignore_ascii_case(keyword) {
            return Ok(());
        }
        Err(FilterError::Unsupported(format!("the operator '{word}' (only '{keyword}' is supported)")))
    }

    fn clause(&mut self) -> Result<Clause, FilterError> {
        let word = self.word()?;
        if word.eq_ignore_ascii_case("startswith") {
            return self.starts_with();
        }
        if let Some(collection) = strip_suffix_ignore_case(&word, "/any") {
            return self.any(collection);
        }
        self.keyword("eq")?;
        let value = self.text()?;
        match word.to_ascii_lowercase().as_str() {
            "appid" => Ok(Clause::AppId(value)),
            "id" => Ok(Clause::Id(value)),
            "displayname" => Ok(Clause::DisplayName(value)),
            _ => Err(unsupported_property(&word)),
        }
    }

    /// `startswith(displayName,'v')`.
    fn starts_with(&mut self) -> Result<Clause, FilterError> {
        self.expect(&Token::Open)?;
        let property = self.word()?;
        self.expect(&Token::Comma)?;
        let value = self.text()?;
        self.expect(&Token::Close)?;
        if !property.eq_ignore_ascii_case("displayName") {
            return Err(unsupported_property(&format!("startswith({property})")));
        }
        Ok(Clause::DisplayNameStartsWith(value))
    }

    /// `servicePrincipalNames/any(c:c eq 'v')`.
    fn any(&mut self, collection: &str) -> Result<Clause, FilterError> {
        if !collection.eq_ignore_ascii_case("servicePrincipalNames") {
            return Err(unsupported_property(&format!("{collection}/any")));
        }
        self.expect(&Token::Open)?;
        let variable = self.word()?;
        self.expect(&Token::Colon)?;
        let compared = self.word()?;
        if compared != variable {
            return Err(FilterError::Syntax(format!("'{compared}' is not the lambda variable '{variable}'")));
        }
        self.keyword("eq")?;
        let value = self.text()?;
        self.expect(&Token::Close)?;
        Ok(Clause::ServicePrincipalName(value))
    }
}

fn unsupported_property(what: &str) -> FilterError {
    FilterError::Unsupported(format!(
        "filtering service principals on '{what}'; byos filters on appId, id and displayName (eq), \
         startswith(displayName,'...') and servicePrincipalNames/any(c:c eq '...'), joined by 'and'"
    ))
}

fn strip_suffix_ignore_case<'a>(word: &'a str, suffix: &str) -> Option<&'a str> {
    let split = word.len().checked_sub(suffix.len())?;
    let (head, tail) = (word.get(..split)?, word.get(split..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ':' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ':' => Token::Colon,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                tokens.push(Token::Text(quoted(&mut chars)?));
            }
            c if is_word_char(c) => {
                let mut word = String::new();
                while let Some(&c) = chars.peek().filter(|c| is_word_char(**c)) {
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(FilterError::Syntax(format!("unexpected character '{other}'"))),
        }
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-')
}

/// The rest of a string literal after its opening quote; OData escapes a quote by doubling it.
fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, FilterError> {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if chars.peek() == Some(&'\'') {
            value.push('\'');
            chars.next();
        } else {
            return Ok(value);
        }
    }
    Err(FilterError::Syntax("a string is not closed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{IdentityKind, PRINCIPAL_RECORD_VERSION};
    use uuid::Uuid;

    fn principal(display_name: &str) -> Principal {
        Principal {
            v: PRINCIPAL_RECORD_VERSION,
            object_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            display_name: display_name.into(),
            kind: IdentityKind::ServicePrincipal,
            secret_hashes: vec![],
            created_on: String::new(),
            header_generation: 0,
        }
    }

    fn parsed(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn what_clients_send_is_understood() {
        let cases = [
            ("servicePrincipalNames/any(c:c eq 'abc')", Clause::ServicePrincipalName("abc".into())),
            ("servicePrincipalNames/any(x: x eq 'abc')", Clause::ServicePrincipalName("abc".into())),
            ("appId eq 'abc'", Clause::AppId("abc".into())),
            ("id eq 'abc'", Clause::Id("abc".into())),
            ("displayName eq 'it''s'", Clause::DisplayName("it's".into())),
            ("startswith(displayName,'byos')", Clause::DisplayNameStartsWith("byos".into())),
            ("DisplayName EQ 'a b'", Clause::DisplayName("a b".into())),
        ];
        for (text, clause) in cases {
            assert_eq!(parsed(text), Filter(vec![clause]), "{text}");
        }
        let both = parsed("servicePrincipalNames/any(c:c eq 'x') and startswith(displayName,'y')");
        assert_eq!(both.0.len(), 2);
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let unsupported = [
            "accountEnabled eq 'true'",
            "appId ne 'x'",
            "appId eq 'x' or appId eq 'y'",
            "tags/any(c:c eq 'x')",
            "startswith(appId,'x')",
        ];
        for text in unsupported {
            assert!(matches!(Filter::parse(text), Err(FilterError::Unsupported(_))), "{text}");
        }
        let malformed =
            ["", "appId eq", "appId eq 'x", "appId eq x", "servicePrincipalNames/any(c:d eq 'x')", "appId eq 'x' b"];
        for text in malformed {
            assert!(matches!(Filter::parse(text), Err(FilterError::Syntax(_))), "{text}");
        }
    }

    #[test]
    fn clauses_match_the_principal_they_name() {
        let p = principal("byos-admin");
        let app = p.client_id.to_string();
        let matching = [
            format!("servicePrincipalNames/any(c:c eq '{}')", app.to_uppercase()),
            format!("appId eq '{app}'"),
            format!("id eq '{}'", p.object_id),
            "displayName eq 'BYOS-ADMIN'".to_owned(),
            "startswith(displayName,'byos')".to_owned(),
            format!("appId eq '{app}' and startswith(displayName,'byos-')"),
        ];
        for text in &matching {
            assert!(parsed(text).matches(&p), "{text}");
        }
        let other = [
            format!("appId eq '{}'", p.object_id),
            "displayName eq 'byos'".to_owned(),
            "startswith(displayName,'byos-admin-and-more')".to_owned(),
            format!("appId eq '{app}' and displayName eq 'x'"),
        ];
        for text in &other {
            assert!(!parsed(text).matches(&p), "{text}");
        }
    }
}
