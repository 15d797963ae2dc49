//! The `--reward` spec parser: `ndcg@10`, `ndcg@10 + 0.3*ild`, `recall@5 - 0.2 * tail`, ...
//!
//! Grammar (whitespace between tokens is ignored):
//!
//! ```text
//! spec   = ['-'] term (('+' | '-') term)*
//! term   = [number '*'] name ['@' integer]
//! number = digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]   (also '.5')
//! ```
//!
//! A single term with weight 1 gives the bare built-in; anything else a [`WeightedSum`].

use super::builtin::{Dgu, Diversity, ExpectedNdcg, Fairness, Hit, IldDistance, Mrr, Ndcg, Recall};
use super::builtin::{TailExposure, Taste, WeightedSum};
use super::{CatalogInfo, ListReward, RewardError, SpecError};

/// The reward names a spec may use; `@K` marks those that need a cut-off.
pub const REWARD_NAMES: &[&str] = &[
    "ndcg@K",
    "recall@K",
    "mrr@K",
    "hit@K",
    "fairness",
    "fairness_dgu",
    "ild",
    "ild_cos",
    "tail",
    "taste@K",
    "endcg@K",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Name,
    Plus,
    Minus,
    Star,
    At,
    End,
}

/// One token: its kind, text and 0-based character span.
#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    start: usize,
    len: usize,
}

/// Parses a `--reward` spec into a reward over `catalog`.
///
/// `catalog` is consulted only to refuse rewards it cannot support (`ild_cos` without
/// embeddings). Errors point at the offending token (see [`SpecError`]).
pub fn parse_reward(spec: &str, catalog: &CatalogInfo) -> Result<Box<dyn ListReward>, RewardError> {
    let tokens = tokenize(spec)?;
    Parser {
        spec,
        tokens,
        pos: 0,
        catalog,
    }
    .parse()
    .map_err(RewardError::from)
}

fn tokenize(spec: &str) -> Result<Vec<Token>, SpecError> {
    let chars: Vec<char> = spec.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let digit_at = |j: usize| chars.get(j).is_some_and(char::is_ascii_digit);
        let kind = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_digit() || (c == '.' && digit_at(i + 1)) {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                if digit_at(i + 1 + sign) {
                    i += 1 + sign;
                    while digit_at(i) {
                        i += 1;
                    }
                }
            }
            Kind::Number
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Kind::Name
        } else {
            i += 1;
            match c {
                '+' => Kind::Plus,
                '-' => Kind::Minus,
                '*' => Kind::Star,
                '@' => Kind::At,
                _ => {
                    return Err(error_at(
                        spec,
                        start,
                        1,
                        format!("unexpected character `{c}`"),
                        "a reward name, a number, `+`, `-`, `*` or `@`",
                    ))
                }
            }
        };
        tokens.push(Token {
            kind,
            text: chars[start..i].iter().collect(),
            start,
            len: i - start,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        text: String::new(),
        start: chars.len(),
        len: 1,
    });
    Ok(tokens)
}

fn error_at(
    spec: &str,
    start: usize,
    width: usize,
    problem: impl Into<String>,
    expected: impl Into<String>,
) -> SpecError {
    SpecError {
        spec: spec.to_string(),
        column: start + 1,
        width: width.max(1),
        problem: problem.into(),
        expected: expected.into(),
    }
}

/// How a token is described in a message.
fn describe(tok: &Token) -> String {
    match tok.kind {
        Kind::End => "end of spec".into(),
        _ => format!("`{}`", tok.text),
    }
}

struct Parser<'s> {
    spec: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    catalog: &'s CatalogInfo,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let tok = self.peek().clone();
        if tok.kind != Kind::End {
            self.pos += 1;
        }
        tok
    }

    fn err(&self, tok: &Token, problem: impl Into<String>, expected: &str) -> SpecError {
        error_at(self.spec, tok.start, tok.len, problem, expected)
    }

    fn parse(mut self) -> Result<Box<dyn ListReward>, SpecError> {
        if self.peek().kind == Kind::End {
            let tok = self.peek().clone();
            let mut e = self.err(&tok, "empty reward spec", "a reward such as ndcg@10");
            e.column = 1;
            return Err(e);
        }
        let mut sign = 1.0f32;
        let mut after = None;
        if self.peek().kind == Kind::Minus {
            sign = -1.0;
            after = Some(self.next());
        }
        let mut terms: Vec<(f32, Box<dyn ListReward>)> = Vec::new();
        loop {
            let (weight, reward) = self.term(after.as_ref())?;
            terms.push((sign * weight, reward));
            let op = self.next();
            sign = match op.kind {
                Kind::End => break,
                Kind::Plus => 1.0,
                Kind::Minus => -1.0,
                _ => {
                    return Err(self.err(
                        &op,
                        format!("unexpected {}", describe(&op)),
                        "`+`, `-` or the end of the spec",
                    ))
                }
            };
            after = Some(op);
        }
        if terms.len() == 1 && terms[0].0 == 1.0 {
            return Ok(terms.remove(0).1);
        }
        Ok(Box::new(WeightedSum::new(terms)))
    }

    /// `[number '*'] name ['@' integer]`; `after` is the operator before it, for messages.
    fn term(&mut self, after: Option<&Token>) -> Result<(f32, Box<dyn ListReward>), SpecError> {
        let mut tok = self.next();
        let mut weight = 1.0f32;
        let mut before = after.cloned();
        if tok.kind == Kind::Number {
            weight = match tok.text.parse::<f32>() {
                Ok(w) if w.is_finite() => w,
                Ok(_) => return Err(self.err(&tok, "weight out of range", "a finite number")),
                Err(_) => {
                    let problem = format!("malformed number `{}`", tok.text);
                    return Err(self.err(&tok, problem, "a weight such as 0.3 or 1e-1"));
                }
            };
            let star = self.next();
            if star.kind != Kind::Star {
                let problem = format!("weight `{}` not followed by `*`", tok.text);
                return Err(self.err(
                    &star,
                    problem,
                    "`*` between a weight and a reward, e.g. 0.3*ild",
                ));
            }
            tok = self.next();
            before = Some(star);
        }
        if tok.kind != Kind::Name {
            let problem = match (tok.kind, before) {
                (Kind::End, Some(op)) => format!("dangling `{}`", op.text),
                _ => format!("unexpected {}", describe(&tok)),
            };
            return Err(self.err(
                &tok,
                problem,
                &format!("a reward: one of {}", REWARD_NAMES.join(", ")),
            ));
        }
        let unknown = |p: &Self| {
            let problem = format!("unknown reward `{}`", tok.text);
            p.err(
                &tok,
                problem,
                &format!("one of {}", REWARD_NAMES.join(", ")),
            )
        };
        let needs_k = match tok.text.as_str() {
            "ndcg" | "recall" | "mrr" | "hit" | "taste" | "endcg" => true,
            "fairness" | "fairness_dgu" | "ild" | "ild_cos" | "tail" => false,
            _ => return Err(unknown(self)),
        };
        let k = if needs_k {
            Some(self.cutoff(&tok)?)
        } else {
            if self.peek().kind == Kind::At {
                let at = self.next();
                let mut width = at.len;
                if self.peek().kind == Kind::Number {
                    let num = self.next();
                    width = num.start + num.len - at.start;
                }
                let problem = format!("reward `{}` takes no cut-off", tok.text);
                let expected = format!("`{}` without `@K`", tok.text);
                return Err(error_at(self.spec, at.start, width, problem, expected));
            }
            None
        };
        if tok.text == "ild_cos" && self.catalog.embeddings.is_none() {
            let problem = "reward `ild_cos` needs item embeddings, but the catalogue has none";
            return Err(self.err(
                &tok,
                problem,
                "`ild` (genre Jaccard) or a catalogue with embeddings",
            ));
        }
        if tok.text == "taste" {
            let Some(tastes) = &self.catalog.user_tastes else {
                let problem =
                    "reward `taste@K` needs the generator's user tastes, but the catalogue has none";
                return Err(self.err(&tok, problem, "`--data synthetic` (only it has tastes)"));
            };
            let reward = Taste::new(k.unwrap_or(0), tastes, &self.catalog.item_genres);
            return Ok((weight, Box::new(reward)));
        }
        if tok.text == "endcg" {
            if self.catalog.belief.is_none() {
                let problem = "reward `endcg@K` needs a next-item model, but none is attached";
                return Err(self.err(
                    &tok,
                    problem,
                    "an alignment from an item-policy SFT run (its model is the belief)",
                ));
            }
            return Ok((weight, Box::new(ExpectedNdcg { k: k.unwrap_or(0) })));
        }
        let reward = builtin(&tok.text, k).ok_or_else(|| unknown(self))?;
        Ok((weight, reward))
    }

    /// `'@' integer` after the name token `name`; K must be a positive integer.
    fn cutoff(&mut self, name: &Token) -> Result<usize, SpecError> {
        let n = &name.text;
        let at = self.peek().clone();
        if at.kind != Kind::At {
            let problem = format!("reward `{n}` needs a cut-off");
            return Err(self.err(
                name,
                problem,
                &format!("{n}@K with a positive integer K, e.g. {n}@10"),
            ));
        }
        self.next();
        let k = self.next();
        let expected = format!("a positive integer K after `@`, e.g. {n}@10");
        if k.kind != Kind::Number || !k.text.chars().all(|c| c.is_ascii_digit()) {
            return Err(self.err(&k, format!("unexpected {}", describe(&k)), &expected));
        }
        match k.text.parse::<usize>() {
            Ok(0) => Err(self.err(&k, format!("cut-off `{n}@0` is zero"), &expected)),
            Ok(k) => Ok(k),
            Err(_) => Err(self.err(&k, "cut-off too large", &expected)),
        }
    }
}

/// The built-in named `name` with cut-off `k` where it takes one; `None` for other names.
fn builtin(name: &str, k: Option<usize>) -> Option<Box<dyn ListReward>> {
    let k = k.unwrap_or(0);
    let jaccard = Diversity {
        distance: IldDistance::Jaccard,
    };
    let cosine = Diversity {
        distance: IldDistance::Cosine,
    };
    Some(match name {
        "ndcg" => Box::new(Ndcg { k }),
        "recall" => Box::new(Recall { k }),
        "mrr" => Box::new(Mrr { k }),
        "hit" => Box::new(Hit { k }),
        "fairness" => Box::new(Fairness),
        "fairness_dgu" => Box::new(Dgu),
        "ild" => Box::new(jaccard),
        "ild_cos" => Box::new(cosine),
        "tail" => Box::new(TailExposure),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> CatalogInfo {
        CatalogInfo::new(vec![vec![0], vec![1], vec![0, 1]], 2, vec![3, 2, 1])
    }

    fn name(spec: &str) -> String {
        parse_reward(spec, &catalog()).unwrap().name()
    }

    /// The spec error of `spec`, checked to be at 1-based `column` with `width` carets and a
    /// problem containing `problem`.
    fn fails(spec: &str, column: usize, width: usize, problem: &str) -> SpecError {
        let e = match parse_reward(spec, &catalog()) {
            Err(RewardError::Spec(e)) => e,
            other => panic!("{spec:?} gave {other:?}"),
        };
        assert_eq!((e.column, e.width), (column, width), "{spec:?}: {e}");
        assert!(e.problem.contains(problem), "{spec:?}: {e}");
        let caret_line = e.to_string().lines().last().unwrap().to_string();
        assert_eq!(
            caret_line,
            format!("  {}{}", " ".repeat(column - 1), "^".repeat(width))
        );
        e
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(name("ndcg@10"), "ndcg@10");
        assert_eq!(name("  ndcg@10 + 0.3*ild "), "ndcg@10 + 0.3*ild");
        assert_eq!(name("recall@5 - 0.2 * tail"), "recall@5 - 0.2*tail");
        assert_eq!(
            name("0.5*ndcg@10+0.5*fairness"),
            "0.5*ndcg@10 + 0.5*fairness"
        );
        assert_eq!(name("ndcg@10 + 1e-1*ild"), "ndcg@10 + 0.1*ild");
        assert_eq!(
            name("mrr@3 - fairness_dgu + .5*hit@1"),
            "mrr@3 - fairness_dgu + 0.5*hit@1"
        );
        assert_eq!(name("-tail"), "-tail");
        assert_eq!(name("2E0*ndcg@5"), "2*ndcg@5");
        assert_eq!(name("ndcg @ 10"), "ndcg@10");
    }

    #[test]
    fn unknown_name_message_matches_the_cli_contract() {
        let e = fails("ndcg@10 + 0.3*ildd", 15, 4, "unknown reward `ildd`");
        assert_eq!(
            e.to_string(),
            "--reward \"ndcg@10 + 0.3*ildd\": unknown reward `ildd` at column 15; expected one of \
             ndcg@K, recall@K, mrr@K, hit@K, fairness, fairness_dgu, ild, ild_cos, tail, taste@K, \
             endcg@K\n  \
             ndcg@10 + 0.3*ildd\n                ^^^^"
        );
        // Columns count characters, not bytes.
        fails("ünd + ild", 1, 3, "unknown reward `ünd`");
        fails("ndcg@10 – ild", 9, 1, "unexpected character `–`");
    }

    #[test]
    fn cut_off_errors() {
        let e = fails("ndcg + ild", 1, 4, "reward `ndcg` needs a cut-off");
        assert!(e.expected.contains("ndcg@10"));
        fails("recall@", 8, 1, "unexpected end of spec");
        fails("hit@0", 5, 1, "cut-off `hit@0` is zero");
        fails("ndcg@2.5", 6, 3, "unexpected `2.5`");
        fails("ndcg@ild", 6, 3, "unexpected `ild`");
        fails(
            "fairness@10 + ndcg@1",
            9,
            3,
            "reward `fairness` takes no cut-off",
        );
        fails("tail@", 5, 1, "takes no cut-off");
    }

    #[test]
    fn operator_and_weight_errors() {
        fails("ndcg@10 +", 10, 1, "dangling `+`");
        fails("ndcg@10 - ", 11, 1, "dangling `-`");
        fails("ndcg@10 + - ild", 11, 1, "unexpected `-`");
        fails("+ndcg@10", 1, 1, "unexpected `+`");
        fails("ndcg@10 ild", 9, 3, "unexpected `ild`");
        fails("ndcg@10 * 2", 9, 1, "unexpected `*`");
        fails("0.3 ild", 5, 3, "weight `0.3` not followed by `*`");
        fails("0.3ild", 4, 3, "weight `0.3` not followed by `*`");
        fails("ndcg@10 + 0.3", 14, 1, "weight `0.3` not followed by `*`");
        fails("0.3*0.5*ild", 5, 3, "unexpected `0.5`");
        fails("ndcg@10 + 0.3*", 15, 1, "dangling `*`");
        fails("1e999*ild", 1, 5, "weight out of range");
        fails("1.2.3*ild", 1, 5, "malformed number `1.2.3`");
        fails("ndcg@10 $ ild", 9, 1, "unexpected character `$`");
    }

    #[test]
    fn empty_spec_and_missing_embeddings() {
        fails("", 1, 1, "empty reward spec");
        fails("   ", 1, 1, "empty reward spec");
        let e = fails("ndcg@10 + 0.1*ild_cos", 15, 7, "needs item embeddings");
        assert!(e.expected.contains("`ild`"));
        let with = catalog().with_embeddings(vec![vec![1.0]; 3]);
        assert_eq!(parse_reward("ild_cos", &with).unwrap().name(), "ild_cos");
    }

    #[test]
    fn taste_needs_user_tastes() {
        let e = fails(
            "ndcg@10 + taste@5",
            11,
            5,
            "needs the generator's user tastes",
        );
        assert!(e.expected.contains("--data synthetic"), "{e}");
        fails("taste", 1, 5, "reward `taste` needs a cut-off");
        let with = catalog().with_user_tastes(vec![vec![0.5, 0.5]]);
        assert_eq!(parse_reward("taste@5", &with).unwrap().name(), "taste@5");
        assert_eq!(
            parse_reward("taste@10 + 0.2*ild", &with).unwrap().name(),
            "taste@10 + 0.2*ild"
        );
    }
}
