/* risk/reference.c: reference tables a payment system has at scoring time: FX
 * reference rates (to compare amounts across currencies), a country's usual UTC
 * offset (the payer's local hour), its home currency, and MCC risk tiers (card
 * network guidance: cash, quasi-cash, gambling, transfers are high risk). Unknown
 * codes are answered as unknown, never guessed. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "paycore/money.h"
#include "risk/risk.h"

typedef struct {
    const char *currency;
    double per_usd;
} fx_rate;

static const fx_rate fx_rates[] = {
    {"USD", 1.00}, {"EUR", 0.92}, {"GBP", 0.79}, {"CAD", 1.36}, {"BRL", 5.10},
    {"MXN", 17.2}, {"INR", 83.3}, {"NGN", 1450}, {"RON", 4.60}, {"TRY", 32.5},
    {"THB", 36.5}, {"PHP", 57.5}, {"AED", 3.67}, {"CNY", 7.20}, {"JPY", 155.0},
    {"CHF", 0.90}, {"AUD", 1.50}, {"SEK", 10.6}, {"PLN", 4.00}, {"ZAR", 18.5},
    {"KES", 130.0}, {"SGD", 1.35}, {"HKD", 7.80}, {"NZD", 1.65}, {"NOK", 10.8},
    {"DKK", 6.90}, {"CZK", 23.0}, {"HUF", 365.0}, {"IDR", 16000}, {"VND", 25400},
    {"EGP", 47.5}, {"PKR", 278.0}, {"KRW", 1370}, {"ARS", 900.0}, {"COP", 3900},
    {"CLP", 930.0}, {"PEN", 3.75}, {"SAR", 3.75}, {"ILS", 3.70}, {"MYR", 4.70},
};

typedef struct {
    const char *country;
    int8_t utc_offset_h;      /* usual offset; several-zone countries use the populous one */
    const char *currency;
} country_info;

static const country_info countries[] = {
    {"US", -6, "USD"}, {"CA", -5, "CAD"}, {"MX", -6, "MXN"}, {"BR", -3, "BRL"},
    {"AR", -3, "ARS"}, {"CL", -4, "CLP"}, {"CO", -5, "COP"}, {"PE", -5, "PEN"},
    {"GB", 1, "GBP"},  {"IE", 1, "EUR"},  {"PT", 1, "EUR"},  {"ES", 2, "EUR"},
    {"FR", 2, "EUR"},  {"DE", 2, "EUR"},  {"IT", 2, "EUR"},  {"NL", 2, "EUR"},
    {"BE", 2, "EUR"},  {"AT", 2, "EUR"},  {"CH", 2, "CHF"},  {"SE", 2, "SEK"},
    {"NO", 2, "NOK"},  {"DK", 2, "DKK"},  {"PL", 2, "PLN"},  {"CZ", 2, "CZK"},
    {"HU", 2, "HUF"},  {"FI", 3, "EUR"},  {"GR", 3, "EUR"},  {"RO", 3, "RON"},
    {"TR", 3, "TRY"},  {"IL", 3, "ILS"},  {"EG", 3, "EGP"},  {"SA", 3, "SAR"},
    {"KE", 3, "KES"},  {"ZA", 2, "ZAR"},  {"NG", 1, "NGN"},  {"AE", 4, "AED"},
    {"PK", 5, "PKR"},  {"IN", 5, "INR"},  {"TH", 7, "THB"},  {"VN", 7, "VND"},
    {"ID", 7, "IDR"},  {"MY", 8, "MYR"},  {"SG", 8, "SGD"},  {"CN", 8, "CNY"},
    {"HK", 8, "HKD"},  {"PH", 8, "PHP"},  {"KR", 9, "KRW"},  {"JP", 9, "JPY"},
    {"AU", 10, "AUD"}, {"NZ", 12, "NZD"},
};

bool risk_fx_per_usd(const char *currency, double *per_usd_out) {
    for (size_t i = 0; i < sizeof(fx_rates) / sizeof(fx_rates[0]); i++) {
        if (strcmp(fx_rates[i].currency, currency) == 0) {
            *per_usd_out = fx_rates[i].per_usd;
            return true;
        }
    }
    return false;
}

/* Minor units to major with the currency's own exponent (JPY 0, USD 2, BHD 3), then
 * to USD at the reference rate. Scoring only: the result never flows back to money. */
double risk_amount_usd(int64_t amount_minor, const char *currency) {
    double per_usd = 1.0;
    if (!risk_fx_per_usd(currency, &per_usd)) per_usd = 1.0;
    const pc_currency *known = pc_currency_find(currency);
    uint8_t exponent = known != NULL ? known->exponent : 2;
    double major = (double)amount_minor;
    for (uint8_t i = 0; i < exponent; i++) major /= 10.0;
    return major / per_usd;
}

/* Every code in 'countries' is two capital letters: a table by letter pair, made once,
 * finds a payer's country (looked up twice a payment) in one read, not a strcmp per
 * row. Anything else (other case, length or bytes) is in no row: unknown. */
#define COUNTRY_LETTERS 26
static uint8_t country_rows[COUNTRY_LETTERS][COUNTRY_LETTERS]; /* row index + 1; 0: none */
static pthread_once_t country_rows_once = PTHREAD_ONCE_INIT;

static bool country_code_shaped(const char *country) {
    return country[0] >= 'A' && country[0] <= 'Z' && country[1] >= 'A' && country[1] <= 'Z' && country[2] == '\0';
}

static void country_rows_make(void) {
    _Static_assert(sizeof(countries) / sizeof(countries[0]) < UINT8_MAX, "a row index + 1 fits a byte");
    for (size_t i = 0; i < sizeof(countries) / sizeof(countries[0]); i++) {
        const char *code = countries[i].country;
        PC_ASSERT(country_code_shaped(code));
        uint8_t *row = &country_rows[code[0] - 'A'][code[1] - 'A'];
        if (*row == 0) *row = (uint8_t)(i + 1); /* the first row of a code, as a scan finds */
    }
}

static const country_info *country_find(const char *country) {
    if (!country_code_shaped(country)) return NULL;
    pthread_once(&country_rows_once, country_rows_make);
    uint8_t row = country_rows[country[0] - 'A'][country[1] - 'A'];
    return row != 0 ? &countries[row - 1] : NULL;
}

int risk_local_hour(const char *country, int64_t ts_s) {
    const country_info *info = country_find(country);
    if (info == NULL) return -1;
    int64_t local_s = ts_s + (int64_t)info->utc_offset_h * 3600;
    int64_t hour = (local_s / 3600) % 24;
    if (hour < 0) hour += 24;
    return (int)hour;
}

const char *risk_country_currency(const char *country) {
    const country_info *info = country_find(country);
    return info == NULL ? NULL : info->currency;
}

int risk_mcc_tier(uint16_t mcc) {
    switch (mcc) {
    case 6011: /* ATM cash */
    case 6010: /* manual cash */
    case 6051: /* quasi-cash, crypto */
    case 6540: /* stored value load */
    case 4829: /* money transfer */
    case 7995: /* gambling */
    case 5967: /* direct marketing, inbound teleservices */
    case 7801: /* government lotteries */
    case 7802:
        return 2;
    case 5732: /* electronics */
    case 5944: /* jewelry */
    case 5816: /* digital games */
    case 5815: /* digital media */
    case 5999: /* misc retail */
    case 4511: /* airlines */
    case 5311: /* department stores */
    case 8398: /* charities */
    case 5094: /* precious stones */
    case 4722: /* travel agencies */
        return 1;
    default:
        return 0;
    }
}
