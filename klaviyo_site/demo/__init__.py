"""A demo of a write, for newcomers: add a profile to a customer's Klaviyo list, then list its members.

Example code of a host product using the integration, mounted by the example site at
``/demo/<customer_identifier>``: ``writes`` makes the calls, ``views`` is the page.
"""
