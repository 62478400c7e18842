//! `#[on_both_backends]`: a test written once that runs on both store backends.
//!
//! ```ignore
//! #[on_both_backends]
//! async fn a_new_user_gets_a_default_identity() { ... }
//! ```
//! keeps the function as it is and adds, beside it, a module of the same name with two tests:
//! `a_new_user_gets_a_default_identity::on_sqlite` and `...::on_postgresql`. Each calls the
//! function through `crate::harness::backend::run` (or `run_blocking` for a plain `fn`), which
//! selects the backend that `TestServer::start` and `harness::backend::fresh_store_url` use, or
//! fails with one line naming what to install when PostgreSQL is not. An `async fn` runs under
//! `#[actix_web::test]`, a plain `fn` under `#[test]`.
//!
//! Plain token handling, no parser crate: the item only has to be a function without
//! parameters, and everything else about it (attributes, doc comments, body) is passed through.

use proc_macro::{Delimiter, TokenStream, TokenTree};

#[proc_macro_attribute]
pub fn on_both_backends(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[on_both_backends] takes no arguments");
    }
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let mut is_async = false;
    let mut signature = None;
    // Attributes and doc comments are `#` + a bracketed group, so a top-level `fn` is the item's.
    for (i, token) in tokens.iter().enumerate() {
        if let TokenTree::Ident(ident) = token {
            match ident.to_string().as_str() {
                "async" => is_async = true,
                "fn" => {
                    signature = Some((tokens.get(i + 1), tokens.get(i + 2)));
                    break;
                }
                _ => {}
            }
        }
    }
    let name = match signature {
        Some((Some(TokenTree::Ident(name)), Some(TokenTree::Group(params))))
            if params.delimiter() == Delimiter::Parenthesis && params.stream().is_empty() =>
        {
            name.to_string()
        }
        _ => {
            return compile_error("#[on_both_backends] goes on a test function without parameters");
        }
    };
    let (test, asyncness, run, wait) = if is_async {
        ("actix_web::test", "async ", "run", ".await")
    } else {
        ("test", "", "run_blocking", "")
    };
    let tests = format!(
        "mod {name} {{
            #[{test}]
            {asyncness}fn on_sqlite() {{
                crate::harness::backend::{run}(crate::harness::backend::Backend::Sqlite, super::{name}){wait}
            }}
            #[{test}]
            {asyncness}fn on_postgresql() {{
                crate::harness::backend::{run}(crate::harness::backend::Backend::Postgresql, super::{name}){wait}
            }}
        }}"
    );
    let mut out = item;
    out.extend(tests.parse::<TokenStream>().expect("generated tests parse"));
    out
}

fn compile_error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .expect("compile_error parses")
}
