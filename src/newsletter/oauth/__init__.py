"""OAuth 2.0 for SMTP (XOAUTH2): where access tokens come from, how sign-ins are kept and renewed.

`tokens` gives the transport its tokens (a user's command, or a stored sign-in
renewed with `client`'s refresh); `store` keeps sign-ins out of the campaign
folder; `providers` is the configuration of `newsletter login microsoft|google`.
Nothing here is imported by the password path or by `--help`.
"""
