"""The broker data plane's pure core: MQTT topics, permission rules, mosquitto's file formats.

Pure like :mod:`pki.x509`: values in, values out, no store, no service, no front end
(``tests/test_layers.py`` checks it).

- :mod:`pki.dataplane.topics`: topic names and filters (MQTT 3.1.1 / 5.0 section 4.7), placeholders;
- :mod:`pki.dataplane.rules`: :class:`~pki.dataplane.rules.Rule`, :class:`~pki.dataplane.rules.RuleSet`
  and its :class:`~pki.dataplane.rules.Decision`;
- :mod:`pki.dataplane.mosquitto`: ``mosquitto_passwd`` lines and ``acl_file`` text.
"""
