"""The alias linker's signals: the weight of each, and the likelihood they add up to.

Signals and weights. Each weight is the natural log of a likelihood ratio: how much more often
the signal is seen when the sender IS the offender than when the sender is anyone else who
writes to the person. Per offender, each signal counts once (its strongest form):

==================  =====================================================  ======  =========
signal              form                                                   LR      weight
==================  =====================================================  ======  =========
linked_address      one of the item's addresses (From, Reply-To, Sender,   10000   9.2
                    Return-Path, envelope) is the offender's: in their
                    entry, or the From of their mail that a rule matched
display_name        the same full name (2+ tokens, folded)                  2000   7.6
                    the same full name, a letter apart                       500   6.2
                    name and initial ("M. Dalton", "Mark D."; every other   1500   7.3
                    word of 3+ letters matched: "David B. Thompson" is
                    not "David Brown")
                    the same one-word name of 6+ letters (a handle)          300   5.7
                    the offender's surname only                               20   3.0
                    a first name or short one-word name only                   3   1.1
lookalike           a name match written with look-alike letters              20   3.0
local_part          the same letters of 8+ (digits, separators stripped)    3000   8.0
                    the same letters of 5-7                                  300   5.7
                    the same 4 letters                                        10   2.3
                    one letter apart, 6+ letters                             100   4.6
origin_ip           the same first external hop / X-Originating-IP          100   4.6
                    (within ``IP_WINDOW``; older: LR 10, weight 2.3); a
                    carrier's NAT puts thousands behind one address
dkim_domain         the same DKIM d= (never a large provider's)              300   5.7
message_domain      the same Message-ID right-hand side                       30   3.4
client              the same User-Agent / X-Mailer, version included          12   2.5
                    (measured on real senders, bench/alias_origins.py:
                    LR 27 on ham, low end 12; checked on spam: 52)
                    beside the same offender's origin_ip                      1   0.0
                    (a relay, a bulk platform or a spam rig shares both:
                    the pair measured LR 101 on ham, 252 on spam, no more
                    than the IP alone, 162 and 514)
body_contact        a phone number or handle in the text (quoted lines       500   6.2
                    left out) that is in the signature of the offender's
                    mail (core/alias_body.py); a colleague may share a
                    switchboard number: never decisive alone (0.33); with
                    a first name or the client it crosses 0.5
timing              the Date's hour (UTC) +-1 holds half or more of the        3   1.1
                    offender's 20+ learned messages (3 hours of 24 hold an
                    eighth of anyone's by chance; the sender's clock says
                    it); only added to an offender another signal found;
                    on 39 real ham senders (bench/alias_hours.py) it fires
                    for 8% of their own mail, 1.1% of others': LR 7, no
                    check set (the spam has no such sender), so 3 stays
body_address        the text names one of the offender's addresses: a        100   4.6
                    friend warning about the offender may name it too
text                the writer's own words like those of the offender's    8-150  2.1-5.0
                    ``MAX_PROFILE`` newest messages (MinHash of character
                    5-grams and word pairs, core/alias_text.py: the bands
                    fitted on real writers); only added to the
                    ``MAX_TEXT_CANDIDATES`` most likely offenders another
                    signal found, never alone
==================  =====================================================  ======  =========

The likelihood is ``sigmoid(PRIOR_LOG_ODDS + sum of weights)``: naive Bayes with a prior of
1 in 1,000 (of the senders a protected person hears from, few are an offender's new account).
Naive Bayes over-counts correlated signals (a private domain's DKIM d= and Message-ID right-hand
side usually go together); the weights above are set with that in mind.

Calibration. These likelihood ratios are first estimates, set by reasoning about how common each
coincidence is among unrelated senders, then checked against the table-driven tests
(tests/unit/test_aliases.py) and the labelled set of bench/aliases.py: generated alias campaigns
against 100 offenders with common English names, mixed into 6,148 real messages no one here
wrote (the SpamAssassin public corpus's 4,150 ham and 1,896 spam, CPython's email tests,
tests/hostile). Re-fit there (2026-12-02): a name with an initial went from LR 100 to 1,500
once a name's unmatched words counted against it. Before that, 5 corpus messages matched an
offender that way ("David B. Thompson" vs "David Brown"); after it none of the 614,800
(message, offender) pairs did, and no unrelated message reached 0.05, so the name with an
initial crosses ``DEFAULT_THRESHOLD`` alone (0.60) with 0 false positives on the corpus (95%
upper bound 0.5 per 1,000). The DKIM weight was not changed: the corpus cannot measure how often
unrelated senders share one. The IP and the client were measured (2026-12-03,
bench/alias_origins.py: every real sender of the corpus as an offender, fitted on the ham,
checked on the spam): the same IP within ``IP_WINDOW`` LR 162 on ham (low end 83), 514 on spam,
so LR 100 stays (a carrier's NAT is commoner now than in 2002); the same client with its version
LR 27 on ham (low end 12), 52 on spam: from LR 3 to 12; the IP and the client together LR 101 on
ham, 252 on spam: no more than the IP alone (the senders who share an IP are a relay's, a bulk
platform's or a spam rig's, and share its client too), so beside the IP the client adds
nothing. An average over clients: a very common client version is weaker evidence than that.
The prior is not fitted either: no public corpus says how many of a person's new senders are
an offender's new accounts. Treat the numbers as a ranking more than as probabilities. The text
signal's bands are the one weight fitted from data (2026-12-03, core/alias_text.py): on real
writers of the corpus, apart from those the bench's offenders write as.

With ``DEFAULT_THRESHOLD`` 0.5, any one of: a linked address, the same full name, a name with
an initial, the same 8+ letter local part crosses it alone; an IP, a DKIM domain needs one
more medium signal; an IP with the same client and a first name does not, nor the client with
a first name (LR 36); the client with the text's strongest bands does. A free-mail domain
is never a signal, and nothing of a large provider is.

Contract: pure constants and arithmetic (no state); ``likelihood`` never raises, whatever the
sum (a very negative one gives 0.0, not an overflow).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta

from guardmail.core.alias_names import weight
from guardmail.core.alias_text import band_weight

PRIOR_LOG_ODDS = math.log(1 / 1000)
DEFAULT_THRESHOLD = 0.5
IP_WINDOW = timedelta(days=30)

W_LINKED = weight(10000)
W_LOOKALIKE = weight(20)
W_LOCAL_LONG = weight(3000)
W_LOCAL = weight(300)
W_LOCAL_SHORT = weight(10)
W_LOCAL_NEAR = weight(100)
W_IP = weight(100)
W_IP_OLD = weight(10)
W_DKIM = weight(300)
W_MSGID = weight(30)
W_CLIENT = weight(12)
W_CLIENT_WITH_IP = 0.0
W_BODY_CONTACT = weight(500)
W_BODY_ADDRESS = weight(100)
W_TIMING = weight(3)
W_TEXT_MAX = band_weight(1.0)[1]
TIMING_MIN_MESSAGES = 20
TIMING_SHARE = 0.5


def likelihood(weights: Iterable[float]) -> float:
    """``sigmoid(PRIOR_LOG_ODDS + sum(weights))``."""
    x = PRIOR_LOG_ODDS + sum(weights)
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0
