"""A built-in imitation of Klaviyo's OAuth endpoints and API, served under /sandbox/.

Every view answers 404 unless ``KLAVIYO_SANDBOX`` is true at request time.
"""
