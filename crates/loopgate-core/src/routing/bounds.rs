//! Bounds on policy text, checked before Cedar parses it.
//!
//! Cedar's parser, its conversion to an abstract syntax tree, printing and
//! dropping a policy all recurse once per level of nesting, without a guard:
//! 150 nested parentheses (363 bytes) overflow a 2 MiB thread stack and abort
//! the process. A size limit cannot help, so this module scans the text as
//! Cedar's lexer would (strings and comments skipped) and refuses it when
//! brackets nest deeper than [`MAX_NESTING`], or when an expression could
//! have a syntax tree deeper than [`MAX_DEPTH`].
//!
//! The depth is over-estimated on purpose: every operator, keyword and
//! member access in an expression counts as one level, with a fresh count
//! after each comma (the items of a set or of a call's arguments are
//! siblings, not nested) and each `;` (a new policy). Every node of Cedar's
//! tree above a leaf comes from one such token or one bracket, so the tree
//! is never deeper than the estimate. A chain of 80 `||` comparisons fits;
//! longer ones belong in a set (`["a", "b"].contains(context.x)`).

use super::PolicyError;

/// Brackets (`(`, `[`, `{`) nested deeper than this are refused.
pub const MAX_NESTING: usize = 32;

/// Expressions whose syntax tree could be deeper than this are refused.
pub const MAX_DEPTH: usize = 256;

/// Policy text longer than this is refused (the server's default;
/// `max_policy_bytes` sets another).
pub const MAX_BYTES: usize = 1024 * 1024;

/// Refuses text whose nesting could exhaust a stack while Cedar reads it.
pub fn check(text: &str) -> Result<(), PolicyError> {
    let bytes = text.as_bytes();
    // One count of operators per open bracket, plus the policy's own level.
    let mut frames: Vec<usize> = vec![0];
    let mut depth = 1;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        let start = at;
        at += 1;
        let ops = match b {
            b'"' => {
                at = skip_string(bytes, at);
                0
            }
            b'/' if bytes.get(at) == Some(&b'/') => {
                while bytes.get(at).is_some_and(|it| *it != b'\n') {
                    at += 1;
                }
                0
            }
            b'(' | b'[' | b'{' => {
                frames.push(0);
                depth += 1;
                if MAX_NESTING < frames.len() - 1 {
                    return Err(too_deep(
                        text,
                        start,
                        format!("brackets nest deeper than {MAX_NESTING} levels"),
                    ));
                }
                0
            }
            b')' | b']' | b'}' => {
                if 1 < frames.len()
                    && let Some(ops) = frames.pop()
                {
                    depth -= ops + 1;
                }
                0
            }
            b',' | b';' => {
                if let Some(ops) = frames.last_mut() {
                    depth -= *ops;
                    *ops = 0;
                }
                0
            }
            b'|' | b'&' | b'=' if bytes.get(at) == Some(&b) => {
                at += 1;
                1
            }
            b'!' | b'<' | b'>' => {
                if bytes.get(at) == Some(&b'=') {
                    at += 1;
                }
                1
            }
            b'+' | b'-' | b'*' | b'.' => 1,
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while bytes
                    .get(at)
                    .is_some_and(|it| it.is_ascii_alphanumeric() || *it == b'_')
                {
                    at += 1;
                }
                let word = bytes.get(start..at).unwrap_or_default();
                usize::from(matches!(
                    word,
                    b"in" | b"has" | b"like" | b"is" | b"if" | b"then" | b"else"
                ))
            }
            _ => 0,
        };
        if 0 < ops {
            if let Some(count) = frames.last_mut() {
                *count += ops;
            }
            depth += ops;
            if MAX_DEPTH < depth {
                return Err(too_deep(
                    text,
                    start,
                    format!(
                        "an expression nests deeper than {MAX_DEPTH} levels (each operator of a chain counts; compare against a set instead of chaining `||`)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The position after a string literal that starts before `at`.
fn skip_string(bytes: &[u8], mut at: usize) -> usize {
    while let Some(&b) = bytes.get(at) {
        at += 1;
        match b {
            b'\\' => at += 1,
            b'"' => return at,
            _ => (),
        }
    }
    at
}

fn too_deep(text: &str, offset: usize, problem: String) -> PolicyError {
    let (line, column) = super::line_and_column(text, offset);
    PolicyError::TooDeep {
        problem,
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(condition: &str) -> String {
        format!("permit(principal, action, resource) when {{ {condition} }};")
    }

    #[test]
    fn ordinary_policies_pass() {
        let text = r#"
// a comment with ((((((((((((((((((((((((((((((((((((((( and "
@id("x") @reviewers("fraud-analysts")
permit(principal == System::"a", action in [Action::"b", Action::"c"], resource)
when { context has amount_minor && context.amount_minor > 100000 && ["DE", "FR"].contains(resource.attributes.country) }
unless { context.confidence.greaterThanOrEqual(decimal("0.9")) || "((((((((((((((((((((((((((((((((((((" like "*" };
"#;
        check(text).unwrap();
        let chain = vec!["context.country == \"X\""; 80].join(" || ");
        check(&policy(&chain)).unwrap();
        let wide = vec!["\"a\""; 10_000].join(", ");
        check(&policy(&format!("[{wide}].contains(context.x)"))).unwrap();
    }

    #[test]
    fn deep_brackets_are_refused_with_their_place() {
        let text = policy(&format!("{}true{}", "(".repeat(150), ")".repeat(150)));
        let error = check(&text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy text refused at line 1, column 75: brackets nest deeper than 32 levels"
        );
        let sets = policy(&format!(
            "{}1{}.contains(1)",
            "[".repeat(200),
            "]".repeat(200)
        ));
        assert!(check(&sets).is_err());
        let records = policy(&format!("{}1{} == 1", "{a: ".repeat(40), "}".repeat(40)));
        assert!(check(&records).is_err());
    }

    #[test]
    fn long_chains_and_nested_ifs_are_refused() {
        for condition in [
            vec!["1"; 300].join(" + "),
            vec!["true"; 300].join(" && "),
            format!("context{} == 1", ".a".repeat(300)),
            format!("[1]{}", ".contains(1)".repeat(300)),
            format!(
                "{}true{}",
                "if true then ".repeat(100),
                " else false".repeat(100)
            ),
        ] {
            assert!(check(&policy(&condition)).is_err(), "{condition:.40}");
        }
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let text = format!(
            "// {}\npermit(principal, action, resource) when {{ \"{}\\\"{}\" == \"\" }};",
            "(".repeat(1000),
            "[".repeat(1000),
            "+".repeat(1000)
        );
        check(&text).unwrap();
    }
}
