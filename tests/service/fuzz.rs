//! Property tests: arbitrary bytes and arbitrary JSON never panic the webhook parser or the
//! configuration parser; they give a value or a clean error.

use idch_autoscaler::config::Config;
use idch_autoscaler::http::webhooks::parse;
use proptest::prelude::*;

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        prop_oneof![
            Just("firing".to_string()),
            Just("resolved".to_string()),
            Just("pool".to_string()),
            ".{0,12}"
        ]
        .prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("status".to_string()),
            Just("version".to_string()),
            Just("alerts".to_string()),
            Just("labels".to_string()),
            Just("commonLabels".to_string()),
            Just("pool".to_string()),
            "[a-z]{1,6}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn webhook_parser_takes_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn webhook_parser_takes_arbitrary_json(value in json()) {
        let body = serde_json::to_vec(&value).unwrap();
        match parse(&body) {
            Ok(r) => prop_assert!(value.is_object() || body.iter().all(|b| b.is_ascii_whitespace()), "{r:?}"),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn config_parser_takes_arbitrary_text(text in ".{0,400}") {
        if let Err(e) = Config::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.reason.is_empty());
        }
    }

    #[test]
    fn config_parser_takes_mutated_good_files(cut in 0usize..600, insert in "[ -~]{0,8}") {
        let good = "[idcloudhost]\napi_url = \"http://127.0.0.1:1\"\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\nmin = 1\nmax = 3\nhealth = { path = \"/h\", interval = \"2s\" }\n";
        let cut = cut.min(good.len());
        let mut text = good[..cut].to_string();
        text.push_str(&insert);
        text.push_str(&good[cut..]);
        if let Err(e) = Config::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.reason.is_empty());
        }
    }
}
