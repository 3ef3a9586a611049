//! Prices in integer Telegram Stars. A discount is a whole percent off (1–90); the best single
//! discount applies (campaigns never stack), the result is rounded down, and nothing sells
//! below 1 Star.

/// The largest discount a campaign may give.
pub const MAX_PERCENT_OFF: u8 = 90;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("a price must be at least 1 Star")]
    ZeroPrice,
    #[error("a discount must be between 1 and {MAX_PERCENT_OFF} percent, got {0}")]
    PercentOutOfRange(u8),
}

/// The price after `percent_off`, rounded down, at least 1 Star.
pub fn discounted_price(base_stars: u32, percent_off: u8) -> Result<u32, PricingError> {
    if base_stars == 0 {
        return Err(PricingError::ZeroPrice);
    }
    if !(1..=MAX_PERCENT_OFF).contains(&percent_off) {
        return Err(PricingError::PercentOutOfRange(percent_off));
    }
    // u64 so that large prices cannot overflow the multiplication.
    let paid = u64::from(base_stars) * u64::from(100 - percent_off) / 100;
    Ok(paid.max(1) as u32)
}

/// The effective price given every discount that currently applies: the best one wins.
/// Invalid percentages are ignored here (they are reported where the campaign is validated).
pub fn best_price(base_stars: u32, applicable_percents: impl IntoIterator<Item = u8>) -> Result<u32, PricingError> {
    if base_stars == 0 {
        return Err(PricingError::ZeroPrice);
    }
    Ok(applicable_percents.into_iter().filter_map(|p| discounted_price(base_stars, p).ok()).min().unwrap_or(base_stars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discount_rounds_down() {
        assert_eq!(discounted_price(99, 15), Ok(84)); // 84.15
        assert_eq!(discounted_price(250, 20), Ok(200));
    }

    #[test]
    fn never_below_one_star() {
        assert_eq!(discounted_price(1, 90), Ok(1));
        assert_eq!(discounted_price(5, 90), Ok(1)); // 0.5 → 0 → 1
    }

    #[test]
    fn out_of_range_discounts_and_zero_prices_are_errors() {
        assert_eq!(discounted_price(100, 0), Err(PricingError::PercentOutOfRange(0)));
        assert_eq!(discounted_price(100, 91), Err(PricingError::PercentOutOfRange(91)));
        assert_eq!(discounted_price(0, 10), Err(PricingError::ZeroPrice));
    }

    #[test]
    fn best_single_discount_wins_without_stacking() {
        assert_eq!(best_price(200, [10, 25, 5]), Ok(150));
        assert_eq!(best_price(200, []), Ok(200));
        assert_eq!(best_price(200, [120]), Ok(200), "an invalid campaign changes nothing");
    }

    #[test]
    fn huge_prices_do_not_overflow() {
        assert_eq!(discounted_price(u32::MAX, 50), Ok(u32::MAX / 2));
    }
}
