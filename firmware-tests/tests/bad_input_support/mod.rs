//! The README's "Bad input" table: each row names the test that checks it, and that test asserts
//! that the real code prints the row's message, so the table cannot drift from the code. Shared by
//! `firmware-tests/tests/bad_input.rs` and `hal-jetson/tests/bad_input_cli.rs` (through `#[path]`).

const README: &str = include_str!("../../../README.md");

/// (test, message) of every row of the README's "Bad input" table.
fn rows() -> Vec<(&'static str, &'static str)> {
    let section = README.split("\n## Bad input\n").nth(1).expect("README.md has a \"## Bad input\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            // | class | input | message | test |; the message is a code span, the test `file::name`.
            let [_, _, message, test] = cells[..] else { return None };
            let test = test.strip_prefix('`')?.strip_suffix('`')?;
            let message = message.strip_prefix("`` ").and_then(|m| m.strip_suffix(" ``"));
            Some((test, message.or_else(|| message_span(cells[2]))?))
        })
        .collect()
}

/// A single-backtick code span's text.
fn message_span(cell: &'static str) -> Option<&'static str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// Assert that `actual` is the message of the row whose test is `test` (`file::name`).
pub fn assert_row(test: &str, actual: &str) {
    let rows = rows();
    let Some((_, expected)) = rows.iter().find(|(t, _)| *t == test) else {
        panic!("README.md's bad-input table has no row for `{test}`; add one with the message:\n{actual}");
    };
    assert_eq!(actual, *expected, "README.md's bad-input row for `{test}` differs from what the code prints");
}

/// Assert that every row naming a test of `file` names one of `tests`, and every test has a row.
pub fn assert_every_row_tested(file: &str, tests: &[&str]) {
    let mut in_table: Vec<&str> = rows().iter().filter_map(|(t, _)| t.strip_prefix(file)?.strip_prefix("::")).collect();
    let mut listed = tests.to_vec();
    in_table.sort_unstable();
    listed.sort_unstable();
    assert_eq!(in_table, listed, "README.md's bad-input rows for {file} and its tests differ");
}
