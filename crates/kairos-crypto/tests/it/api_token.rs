use kairos_crypto::api_token::{self, ApiTokenError, TokenHash, TokenId};

fn check_malformed(token: &str, expected: ApiTokenError) {
    let err = api_token::parse(token).err();
    assert_eq!(err, Some(expected), "{token}");
    if let Some(err) = err.filter(|_| !token.is_empty()) {
        assert!(!err.to_string().contains(token));
    }
}

#[test]
fn generated_tokens_parse_and_verify() {
    // Secrets may contain '_' and '-': parse must not split on them.
    for _ in 0..200 {
        let new = api_token::generate().unwrap();
        let token = new.token.expose_secret();
        assert!(token.starts_with(api_token::PREFIX));
        assert_eq!(token.len(), "kairos_pat_".len() + 12 + 1 + 43);

        let (id, secret) = api_token::parse(token).unwrap();
        assert_eq!(id, new.id);
        assert!(api_token::verify(&secret, &new.hash));

        let stored = TokenHash::from_hex(&new.hash.to_hex()).unwrap();
        assert!(api_token::verify(&secret, &stored));
        assert_eq!(id.as_str().parse::<TokenId>().unwrap(), id);
    }
}

#[test]
fn secret_of_another_token_does_not_verify() {
    let first = api_token::generate().unwrap();
    let second = api_token::generate().unwrap();
    let (_, second_secret) = api_token::parse(second.token.expose_secret()).unwrap();
    assert!(!api_token::verify(&second_secret, &first.hash));
}

#[test]
fn altered_secret_does_not_verify() {
    let new = api_token::generate().unwrap();
    let token = new.token.expose_secret();
    let last = token.chars().nth(token.len() - 2).unwrap();
    let replacement = if last == 'A' { 'B' } else { 'A' };
    let mut altered = token[..token.len() - 2].to_owned();
    altered.push(replacement);
    altered.push_str(&token[token.len() - 1..]);
    match api_token::parse(&altered) {
        Ok((_, secret)) => assert!(!api_token::verify(&secret, &new.hash)),
        Err(err) => assert_eq!(err, ApiTokenError::BadSecret),
    }
}

#[test]
fn malformed_tokens_are_rejected() {
    let secret = "A".repeat(43);
    check_malformed("", ApiTokenError::WrongPrefix);
    check_malformed(
        &format!("kairos_xyz_abcdef123456_{secret}"),
        ApiTokenError::WrongPrefix,
    );
    check_malformed(
        &format!("Bearer kairos_pat_abcdef123456_{secret}"),
        ApiTokenError::WrongPrefix,
    );
    check_malformed("kairos_pat_abc", ApiTokenError::BadId);
    check_malformed(
        &format!("kairos_pat_ABCDEF123456_{secret}"),
        ApiTokenError::BadId,
    );
    check_malformed(
        &format!("kairos_pat_abcdef12345_{secret}"),
        ApiTokenError::BadId,
    );
    check_malformed("kairos_pat_abcdef123456", ApiTokenError::BadSecret);
    check_malformed(
        &format!("kairos_pat_abcdef123456{secret}"),
        ApiTokenError::BadSecret,
    );
    check_malformed(
        &format!("kairos_pat_abcdef123456_{}", &secret[1..]),
        ApiTokenError::BadSecret,
    );
    check_malformed(
        &format!("kairos_pat_abcdef123456_{secret}A"),
        ApiTokenError::BadSecret,
    );
    check_malformed(
        &format!("kairos_pat_abcdef123456_{}+", &secret[1..]),
        ApiTokenError::BadSecret,
    );
    check_malformed(
        &format!("kairos_pat_abcdef123456_{}=", &secret[1..]),
        ApiTokenError::BadSecret,
    );
    // The last character must not carry stray bits: 'B' encodes bits past the 32nd byte.
    check_malformed(
        &format!("kairos_pat_abcdef123456_{}B", &secret[1..]),
        ApiTokenError::BadSecret,
    );
    // The well-formed version of the same token parses.
    assert!(api_token::parse(&format!("kairos_pat_abcdef123456_{secret}")).is_ok());
}

#[test]
fn bad_stored_values_are_rejected() {
    assert_eq!("abc".parse::<TokenId>(), Err(ApiTokenError::BadId));
    assert_eq!("abcdef12345!".parse::<TokenId>(), Err(ApiTokenError::BadId));
    assert_eq!(TokenHash::from_hex("00"), Err(ApiTokenError::BadHash));
    assert_eq!(
        TokenHash::from_hex(&"zz".repeat(32)),
        Err(ApiTokenError::BadHash)
    );
}

#[test]
fn debug_does_not_show_the_token() {
    let new = api_token::generate().unwrap();
    let token = new.token.expose_secret();
    let secret_part = &token[token.len() - 43..];
    let debug = format!("{new:?}");
    assert!(!debug.contains(secret_part), "{debug}");
    let (_, secret) = api_token::parse(token).unwrap();
    assert!(!format!("{secret:?}").contains(secret_part));
}
