"""gunicorn settings for ``make serve``; workers, threads and the address come from its command line."""

# Access log on stdout without query strings or referrers: Klaviyo's redirect to
# /authorize?code=...&state=... would otherwise write authorization codes into the log,
# and so would the Referer of the next page the browser opens.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

# gthread workers keep answering while a request waits for Klaviyo; this only bounds a
# worker process that stops responding altogether.
timeout = 60
graceful_timeout = 30

# Several gunicorn instances may share a host; none needs the control socket in ~/.gunicorn.
control_socket_disable = True
