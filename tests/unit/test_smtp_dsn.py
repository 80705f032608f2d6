"""dsn.take: RFC 3461 parameters lifted out of MAIL/RCPT arguments exactly as given."""

from __future__ import annotations

import pytest

from guardmail.channels.smtp import dsn


def test_dsn_parameters_are_taken_as_given_and_the_rest_is_left() -> None:
    rest, taken = dsn.take("<a@b> SIZE=10 ret=hdrs ENVID=Ab+2Bc BODY=8BITMIME", dsn.MAIL_PARAMS)
    assert rest == "<a@b> SIZE=10 BODY=8BITMIME"
    assert taken == ("RET=hdrs", "ENVID=Ab+2Bc")
    rest, taken = dsn.take("<x>y@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;X>Y@B", dsn.RCPT_PARAMS)
    assert (rest, taken) == ("<x>y@b>", ("NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;X>Y@B"))
    assert dsn.take("<a@b>", dsn.RCPT_PARAMS) == ("<a@b>", ())
    assert dsn.take("no path", dsn.RCPT_PARAMS) == ("no path", ())


@pytest.mark.parametrize(
    ("arg", "names"),
    [
        ("<a@b> RET=ALL", dsn.MAIL_PARAMS),
        ("<a@b> RET=FULL RET=HDRS", dsn.MAIL_PARAMS),
        ("<a@b> ENVID", dsn.MAIL_PARAMS),
        ("<a@b> ENVID=a=b", dsn.MAIL_PARAMS),
        ("<a@b> ENVID=" + "x" * 101, dsn.MAIL_PARAMS),
        ("<a@b> NOTIFY=NEVER,SUCCESS", dsn.RCPT_PARAMS),
        ("<a@b> NOTIFY=SUCCESS,SUCCESS", dsn.RCPT_PARAMS),
        ("<a@b> NOTIFY=", dsn.RCPT_PARAMS),
        ("<a@b> ORCPT=a@b", dsn.RCPT_PARAMS),
        ("<a@b> ORCPT=rfc822;" + "x" * 500, dsn.RCPT_PARAMS),
        ("<a@b> ORCPT=rfc822;\x7f", dsn.RCPT_PARAMS),
    ],
)
def test_what_rfc_3461_does_not_allow_is_refused(arg: str, names: tuple[str, ...]) -> None:
    with pytest.raises(dsn.BadParameter):
        dsn.take(arg, names)
