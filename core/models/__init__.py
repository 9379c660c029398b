"""All tables. Import models from here: ``from core.models import Account, Meter``."""
from core.db import Base
from core.models.alarm import AlarmState, BotConfirmation, Notification, SupplyControl
from core.models.audit import AuditLog
from core.models.batch import BatchItem, BatchTask
from core.models.bill import Bill, BillLine
from core.models.billing import BilledUsage, MeterBillingState
from core.models.binding import TenantBinding
from core.models.command import MeterCommand, MeterCommandEvent
from core.models.ledger import JournalEntry, LedgerAccount, Posting
from core.models.manager import Manager, ManagerRole
from core.models.meter import Gateway, Meter, MeterEvent, Reading
from core.models.monthend import ApportionRule, ChargeScheme, MonthEndStep, MonthItem
from core.models.payment import PaymentOrder, PaymentReconciliation, PaymentRefund
from core.models.preset import AccountPreset
from core.models.report import LedgerDay, ReadingDay, UsageDay, UsageMonth
from core.models.site import Building, Floor, Room, Site
from core.models.tariff import TariffPlan, TariffVersion
from core.models.tenant import Account, Tenant

__all__ = [
    "Base", "Site", "Building", "Floor", "Room", "Tenant", "Account", "TariffPlan", "TariffVersion",
    "Gateway", "Meter", "MeterEvent", "Reading", "MeterCommand", "MeterCommandEvent",
    "LedgerAccount", "JournalEntry", "Posting", "PaymentOrder", "Manager", "ManagerRole",
    "AuditLog", "AccountPreset", "BilledUsage", "MeterBillingState",
    "PaymentRefund", "PaymentReconciliation", "TenantBinding",
    "AlarmState", "BotConfirmation", "Notification", "SupplyControl",
    "LedgerDay", "UsageDay", "UsageMonth", "ReadingDay",
    "ChargeScheme", "ApportionRule", "MonthItem", "MonthEndStep", "Bill", "BillLine", "BatchTask", "BatchItem",
]
