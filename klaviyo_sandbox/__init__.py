"""A built-in imitation of Klaviyo's OAuth endpoints and API, mounted under any prefix (/sandbox/ in klaviyo_site).

Every view answers 404 unless ``KLAVIYO_SANDBOX`` is true at request time.
"""
