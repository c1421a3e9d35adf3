"""Events get a foreign key to their connection (filled in by the next migration)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_integration", "0005_refresh_failed_until"),
    ]

    operations = [
        migrations.AddField(
            model_name="connectionevent",
            name="connection",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="oauth_integration.oauthtoken",
            ),
        ),
    ]
