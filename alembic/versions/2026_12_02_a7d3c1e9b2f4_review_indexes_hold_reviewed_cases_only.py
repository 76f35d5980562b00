"""review indexes hold reviewed cases only

The four queue indexes (age, ranked, claims, due) become partial, `WHERE review_status IS NOT NULL`: a case
decided automatically and not audited never appears in the queue, so it need not pay four index entries on
insert. Every queue query compares review_status with a value, which implies the predicate, so both engines'
planners keep using them. Alembic's autogenerate does not compare index predicates;
tests/test_review_indexes.py checks them. On PostgreSQL the rebuild holds off writes to the case table while
it reads it once per index.

Revision ID: a7d3c1e9b2f4
Revises: 83baaaeec7c9
Create Date: 2026-12-02 17:10:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'a7d3c1e9b2f4'
down_revision: Union[str, None] = '83baaaeec7c9'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

INDEXES = {
    'ix_case_queue_age': ['review_status', 'id'],
    'ix_case_queue_ranked': ['review_status', 'show_suggestion', 'audit', 'confidence', 'id'],
    'ix_case_queue_claims': ['review_status', 'claim_expires_at'],
    'ix_case_queue_due': ['review_status', 'due_at'],
}
REVIEWED = sa.text('review_status IS NOT NULL')


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name='case')
        op.create_index(name, 'case', columns, unique=False, sqlite_where=REVIEWED, postgresql_where=REVIEWED)


def downgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name='case')
        op.create_index(name, 'case', columns, unique=False)
