use super::*;

fn q(text: &str) -> Quantity {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

#[test]
fn binary_suffixes_are_powers_of_1024() {
    assert_eq!(q("1Ki").value(), 1024);
    assert_eq!(q("64Mi").value(), 64 << 20);
    assert_eq!(q("2Gi").value(), 2 << 30);
    assert_eq!(q("1Ti").value(), 1 << 40);
    assert_eq!(q("1Pi").value(), 1 << 50);
    assert_eq!(q("3Ei").value(), 3 << 60);
    assert_eq!(q("1.5Ki").value(), 1536);
    assert_eq!(q("0.5Mi").value(), 512 * 1024);
}

#[test]
fn decimal_suffixes_are_powers_of_1000() {
    assert_eq!(q("1k").value(), 1_000);
    assert_eq!(q("129M").value(), 129_000_000);
    assert_eq!(q("1G").value(), 1_000_000_000);
    assert_eq!(q("2T").value(), 2_000_000_000_000);
    assert_eq!(q("1P").value(), 1_000_000_000_000_000);
    assert_eq!(q("9E").value(), 9_000_000_000_000_000_000);
    assert_eq!(q("500m").milli_value(), 500);
    assert_eq!(q("250u").nano_value(), 250_000);
    assert_eq!(q("7n").nano_value(), 7);
    assert_eq!(q("3").value(), 3);
}

#[test]
fn decimal_exponents_in_either_case_and_sign() {
    assert_eq!(q("2e3").value(), 2_000);
    assert_eq!(q("2E3").value(), 2_000);
    assert_eq!(q("1e+2").value(), 100);
    assert_eq!(q("5e-1").milli_value(), 500);
    assert_eq!(q("1.5e2").value(), 150);
    assert_eq!(q("12e0").value(), 12);
}

#[test]
fn fractions_and_signs() {
    assert_eq!(q("0.1").milli_value(), 100);
    assert_eq!(q(".5").milli_value(), 500);
    assert_eq!(q("5.").value(), 5);
    assert_eq!(q("+2").value(), 2);
    assert_eq!(q("-2").value(), -2);
    assert!(q("-1m").is_negative());
    assert!(!q("0").is_negative());
    assert_eq!(q("0").value(), 0);
    assert_eq!(q("000.000").nanos(), 0);
    assert_eq!(q("1.25").as_f64(), 1.25);
    assert_eq!(q("0.000000001").nano_value(), 1);
}

#[test]
fn reading_in_a_coarser_unit_rounds_away_from_zero() {
    // Quantity.Value() / MilliValue(): rounded up, not truncated.
    assert_eq!(q("100m").value(), 1);
    assert_eq!(q("1001m").value(), 2);
    assert_eq!(q("1000m").value(), 1);
    assert_eq!(q("0.0001").milli_value(), 1);
    assert_eq!(
        q("1.5n").nano_value(),
        2,
        "finer than 1n rounds up at parse"
    );
    assert_eq!(q("-100m").value(), -1);
    assert_eq!(q("-1.5").value(), -2);
    assert_eq!(q("1e-12").nanos(), 1);
    assert_eq!(q("1.0000000001Ki").value(), 1025);
    assert_eq!(q("1.000000000000000000001").nanos(), 1_000_000_001);
    assert_eq!(
        q("1e-1000000000000").nanos(),
        1,
        "a tiny positive value is one nano"
    );
}

#[test]
fn exact_where_floats_are_not() {
    // 0.1 + 0.2 style errors would make these off by one after ceil.
    assert_eq!(q("0.3").milli_value(), 300);
    assert_eq!(q("1.1").milli_value(), 1100);
    assert_eq!(q("4.35Gi").value(), 4_670_776_935);
    assert_eq!(q("123456789123456789").value(), 123_456_789_123_456_789);
}

#[test]
fn huge_values_saturate() {
    assert_eq!(q("1e100").value(), i64::MAX);
    assert_eq!(q("-1e100").value(), i64::MIN);
    assert_eq!(
        q("99999999999999999999999999999999999999999999Ei").value(),
        i64::MAX
    );
    assert_eq!(q("100E").milli_value(), i64::MAX);
    assert_eq!(q("1e99999999999999999999999").value(), i64::MAX);
    assert!(q("1e30") > q("1e20"));
}

#[test]
fn invalid_text_is_an_error_naming_it() {
    for text in [
        "", " ", "Mi", "1Q", "1 Mi", " 1", "1 ", "1mi", "1KI", "1e", "1e1.5", "1.2.3", ".", "-",
        "+", "--1", "1Kii", "0x10", "1,5", "e3", "1m3",
    ] {
        assert!(
            text.parse::<Quantity>().is_err(),
            "{text:?} should not parse"
        );
    }
    assert_eq!(parse(""), Err(QuantityError::Empty(String::new())));
    let error = parse("12Q").unwrap_err();
    assert_eq!(
        error,
        QuantityError::Suffix {
            text: "12Q".into(),
            suffix: "Q".into()
        }
    );
    assert!(error.to_string().contains("\"12Q\""), "{error}");
    assert_eq!(parse("abc"), Err(QuantityError::Number("abc".into())));
}

#[test]
fn display_is_the_value_in_base_units() {
    assert_eq!(q("250m").to_string(), "0.25");
    assert_eq!(q("1.5Ki").to_string(), "1536");
    assert_eq!(q("-1n").to_string(), "-0.000000001");
    assert_eq!(q("0").to_string(), "0");
}
