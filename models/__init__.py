"""SQLAlchemy 2 typed models, one module per aggregate. Importing this package registers all."""

from models.agency import Agency
from models.alert import Alert
from models.api_client import ApiClient
from models.audit import AuditChainLink, AuditEntry
from models.base import Base
from models.contact import ContactAttempt, ContactCode
from models.huddle import Huddle, HuddleItem
from models.idempotency import IdempotencyRecord
from models.incident import Incident, IncidentSubstance
from models.person import Person, PossibleDuplicate
from models.safety_plan import SafetyPlanAction, SafetyPlanVersion
from models.user import LoginFailure, User
from models.webhook import Webhook, WebhookDelivery

__all__ = [
    "Agency",
    "Alert",
    "ApiClient",
    "AuditChainLink",
    "AuditEntry",
    "Base",
    "ContactAttempt",
    "ContactCode",
    "Huddle",
    "HuddleItem",
    "IdempotencyRecord",
    "Incident",
    "IncidentSubstance",
    "LoginFailure",
    "Person",
    "PossibleDuplicate",
    "SafetyPlanAction",
    "SafetyPlanVersion",
    "User",
    "Webhook",
    "WebhookDelivery",
]
